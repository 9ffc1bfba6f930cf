"""The synthetic world's vocabulary: names, countries, categories, pages, campaigns.

Plain data. Every string here is JSON-safe as is (no ``"``, ``\\`` or control characters), which
lets the generators build JSON text by concatenation. Domains are reserved ones (``.example``,
``example.com``) so a demo can never mail or link a real person.
"""

from __future__ import annotations

from typing import Final, NamedTuple

SHOP_URL: Final = "https://shop.example"
CURRENCY: Final = "EUR"


class Country(NamedTuple):
    code: str
    weight: float
    calling_code: str
    mobile_prefix: str
    """Leading digits of a mobile national significant number."""
    digits: int
    """Length of the national significant number."""
    trunk: str
    """National trunk prefix ("0"; "1" in the North American plan)."""
    locale: str
    timezones: tuple[str, ...]
    cities: tuple[str, ...]


COUNTRIES: Final = (
    Country(
        "US",
        0.25,
        "1",
        "",
        10,
        "1",
        "en-US",
        ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"),
        ("New York", "Chicago", "Austin", "Seattle", "Denver", "Boston"),
    ),
    Country(
        "GB",
        0.15,
        "44",
        "7",
        10,
        "0",
        "en-GB",
        ("Europe/London",),
        ("London", "Manchester", "Bristol", "Leeds", "Glasgow"),
    ),
    Country(
        "DE",
        0.15,
        "49",
        "15",
        11,
        "0",
        "de-DE",
        ("Europe/Berlin",),
        ("Berlin", "Hamburg", "Munich", "Cologne", "Leipzig"),
    ),
    Country(
        "FR",
        0.12,
        "33",
        "6",
        9,
        "0",
        "fr-FR",
        ("Europe/Paris",),
        ("Paris", "Lyon", "Marseille", "Lille", "Nantes"),
    ),
    Country(
        "NL",
        0.06,
        "31",
        "6",
        9,
        "0",
        "nl-NL",
        ("Europe/Amsterdam",),
        ("Amsterdam", "Rotterdam", "Utrecht"),
    ),
    Country(
        "ES",
        0.07,
        "34",
        "6",
        9,
        "",
        "es-ES",
        ("Europe/Madrid",),
        ("Madrid", "Barcelona", "Valencia", "Seville"),
    ),
    Country(
        "IT",
        0.07,
        "39",
        "3",
        10,
        "",
        "it-IT",
        ("Europe/Rome",),
        ("Rome", "Milan", "Turin", "Naples"),
    ),
    Country(
        "CA",
        0.05,
        "1",
        "",
        10,
        "1",
        "en-CA",
        ("America/Toronto", "America/Vancouver"),
        ("Toronto", "Vancouver", "Montreal"),
    ),
    Country(
        "AU",
        0.05,
        "61",
        "4",
        9,
        "0",
        "en-AU",
        ("Australia/Sydney", "Australia/Melbourne"),
        ("Sydney", "Melbourne", "Brisbane"),
    ),
    Country(
        "SE",
        0.03,
        "46",
        "7",
        9,
        "0",
        "sv-SE",
        ("Europe/Stockholm",),
        ("Stockholm", "Gothenburg", "Malmo"),
    ),
)

# (as written, as in an email address)
FIRST_NAMES: Final = (
    ("Anna", "anna"), ("Ben", "ben"), ("Chloé", "chloe"), ("David", "david"), ("Emma", "emma"),
    ("François", "francois"), ("Grace", "grace"), ("Hugo", "hugo"), ("Isabel", "isabel"),
    ("Jonas", "jonas"), ("Kai", "kai"), ("Lena", "lena"), ("Mia", "mia"), ("Noah", "noah"),
    ("Olivia", "olivia"), ("Pablo", "pablo"), ("Quinn", "quinn"), ("Rosa", "rosa"),
    ("Sofia", "sofia"), ("Tom", "tom"), ("Uma", "uma"), ("Victor", "victor"), ("Wei", "wei"),
    ("Yara", "yara"), ("Zoë", "zoe"), ("Björn", "bjorn"), ("José", "jose"), ("Lucas", "lucas"),
    ("Amelia", "amelia"), ("Oliver", "oliver"), ("Liam", "liam"), ("Ella", "ella"),
    ("Mateo", "mateo"), ("Nora", "nora"), ("Elias", "elias"), ("Hannah", "hannah"),
    ("Leon", "leon"), ("Clara", "clara"), ("Finn", "finn"), ("Ines", "ines"), ("Marco", "marco"),
    ("Giulia", "giulia"), ("Sven", "sven"), ("Astrid", "astrid"), ("Aiden", "aiden"),
    ("Priya", "priya"), ("Omar", "omar"), ("Fatima", "fatima"), ("Kenji", "kenji"),
    ("Lucía", "lucia"), ("Mohammed", "mohammed"), ("Sarah", "sarah"), ("James", "james"),
    ("Maria", "maria"), ("Jack", "jack"), ("Ava", "ava"), ("Louis", "louis"), ("Jade", "jade"),
    ("Emil", "emil"), ("Freya", "freya"),
)  # fmt: skip
LAST_NAMES: Final = (
    ("Smith", "smith"), ("Müller", "mueller"), ("García", "garcia"), ("Martin", "martin"),
    ("Rossi", "rossi"), ("de Vries", "devries"), ("Johnson", "johnson"), ("Schmidt", "schmidt"),
    ("Dubois", "dubois"), ("Fernández", "fernandez"), ("Bianchi", "bianchi"),
    ("Andersson", "andersson"), ("Brown", "brown"), ("Schneider", "schneider"),
    ("Bernard", "bernard"), ("López", "lopez"), ("Romano", "romano"), ("Jansen", "jansen"),
    ("Williams", "williams"), ("Fischer", "fischer"), ("Moreau", "moreau"),
    ("Martínez", "martinez"), ("Colombo", "colombo"), ("Bakker", "bakker"), ("Taylor", "taylor"),
    ("Weber", "weber"), ("Laurent", "laurent"), ("Sánchez", "sanchez"), ("Ricci", "ricci"),
    ("Visser", "visser"), ("O'Brien", "obrien"), ("Nguyen", "nguyen"), ("Kowalski", "kowalski"),
    ("Nilsson", "nilsson"), ("Wilson", "wilson"), ("Wagner", "wagner"), ("Lefebvre", "lefebvre"),
    ("Pérez", "perez"), ("Greco", "greco"), ("Smit", "smit"), ("Davies", "davies"),
    ("Becker", "becker"), ("Petit", "petit"), ("Gómez", "gomez"), ("Bruno", "bruno"),
    ("Meijer", "meijer"), ("Chen", "chen"), ("Khan", "khan"), ("Tanaka", "tanaka"),
    ("Hoffmann", "hoffmann"), ("Roux", "roux"), ("Costa", "costa"), ("Evans", "evans"),
    ("Koch", "koch"), ("Lindqvist", "lindqvist"), ("Murphy", "murphy"), ("Novak", "novak"),
    ("Silva", "silva"), ("Walsh", "walsh"), ("Young", "young"),
)  # fmt: skip
EMAIL_DOMAINS: Final = (
    "mail.example", "gmail.example", "outlook.example", "yahoo.example", "icloud.example",
    "web.example", "example.com", "example.net", "example.org", "proton.example",
)  # fmt: skip
EMAIL_SEPARATORS: Final = (".", "_", "")


class Category(NamedTuple):
    name: str
    slug: str
    median_price: float
    nouns: tuple[str, ...]


CATEGORIES: Final = (
    Category("Shoes", "shoes", 90.0, ("Sneakers", "Boots", "Loafers", "Sandals", "Trainers")),
    Category(
        "Outerwear", "outerwear", 160.0, ("Parka", "Rain Jacket", "Coat", "Puffer", "Trench Coat")
    ),
    Category("Tops", "tops", 45.0, ("T-Shirt", "Shirt", "Hoodie", "Sweater", "Polo")),
    Category("Bottoms", "bottoms", 60.0, ("Jeans", "Chinos", "Joggers", "Shorts", "Skirt")),
    Category(
        "Accessories", "accessories", 35.0, ("Scarf", "Beanie", "Belt", "Sunglasses", "Watch")
    ),
    Category("Bags", "bags", 70.0, ("Backpack", "Tote", "Weekender", "Crossbody Bag", "Wallet")),
    Category("Home", "home", 30.0, ("Candle", "Throw Blanket", "Mug Set", "Cushion", "Vase")),
    Category(
        "Beauty", "beauty", 25.0, ("Face Serum", "Hand Cream", "Lip Balm", "Shampoo Bar", "Perfume")
    ),
    Category(
        "Sports", "sports", 40.0, ("Yoga Mat", "Running Tights", "Water Bottle", "Gym Bag", "Cap")
    ),
    Category("Kids", "kids", 25.0, ("Rain Boots", "Pyjamas", "Puzzle", "Plush Toy", "Raincoat")),
)
ADJECTIVES: Final = (
    "Classic", "Everyday", "Organic Cotton", "Merino", "Recycled", "Vintage", "Lightweight",
    "Premium", "Essential", "Heritage", "Urban", "Coastal", "Alpine", "Nordic", "Linen", "Canvas",
)  # fmt: skip
COLOURS: Final = (
    "Black", "Navy", "Olive", "Sand", "White", "Grey", "Rust", "Forest", "Sky", "Burgundy",
)  # fmt: skip

# Site pages besides product pages: (name, path). Collections follow, one per category.
SITE_PAGES: Final = (
    ("Home", "/"),
    ("New Arrivals", "/collections/new-arrivals"),
    ("Sale", "/collections/sale"),
    ("Search", "/search"),
    ("Cart", "/cart"),
    ("Account", "/account"),
    ("About", "/pages/about"),
    ("Shipping", "/pages/shipping"),
)
LOGIN_PAGE: Final = ("Login", "/account/login")
CHECKOUT_PAGE: Final = ("Checkout", "/checkout")
THANK_YOU_PAGE: Final = ("Thank You", "/checkout/thank-you")
REFERRERS: Final = (
    "https://www.google.com/",
    "https://www.instagram.com/",
    "https://www.facebook.com/",
    "https://mail.example/",
    "https://blog.example/gift-guide",
)
# (utm_source, utm_medium, utm_campaign)
UTM_CAMPAIGNS: Final = (
    ("newsletter", "email", "weekly_picks"),
    ("google", "cpc", "brand_search"),
    ("instagram", "social", "spring_drop"),
    ("facebook", "paid_social", "retargeting"),
    ("partner_blog", "referral", "gift_guide"),
)
USER_AGENTS: Final = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
)
# Documentation address blocks (RFC 5737): never a real visitor's address.
IP_BLOCKS: Final = ("192.0.2", "198.51.100", "203.0.113")
EMAIL_SUBJECTS: Final = (
    "This week's picks for you",
    "New arrivals just landed",
    "Your weekend edit",
    "Back in stock: the favourites",
    "Last chance: the seasonal sale",
    "Fresh colours for the season",
)
TICKET_SUBJECTS: Final = (
    "Where is my order?",
    "Return request",
    "Exchange for a different size",
    "Item arrived damaged",
    "Discount code not working",
    "Change my delivery address",
    "Cancel my order",
    "Question about sizing",
    "Refund not received yet",
    "Unsubscribe me please",
    "Wrong item delivered",
    "Payment failed at checkout",
)
TICKET_TAGS: Final = ("order", "returns", "shipping", "payment", "sizing", "vip", "complaint")
DISCOUNT_CODES: Final = (("WELCOME10", 0.10), ("SPRING15", 0.15), ("VIP20", 0.20))
