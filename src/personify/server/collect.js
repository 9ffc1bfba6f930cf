/*! Personify browser collector — served by `personify serve` at /collect.js.
 *
 *   <script src="https://YOUR-SERVER/collect.js" data-write-key="wk_..." async></script>
 *
 * Gives the page analytics.track / identify / page / reset / flush (Segment's call signatures),
 * keeps an anonymous id in a first-party cookie, forwards window.dataLayer pushes (Google Tag
 * Manager, GA4 e-commerce events) as track calls, batches events, retries failed sends with
 * backoff (the batch waits in localStorage, so a closed tab retries on the next page), and uses
 * navigator.sendBeacon when the page is hidden or unloaded. Every event carries a messageId, so
 * a batch sent twice is stored once.
 *
 * Options: data-* attributes on the script tag, or window.personifyConfig = {...} before it:
 *   writeKey, endpoint (default: this script's origin), flushInterval (ms, 1000), batchSize (20),
 *   autoPage (true), dataLayer ("dataLayer"), dataLayerEvents ({"gtm event": "Track Name"}).
 */
(function (w, d) {
  "use strict";
  if (w.__personify) return;
  var script = d.currentScript;
  var cfg = w.personifyConfig || {};
  function opt(name, attr, fallback) {
    if (cfg[name] !== undefined) return cfg[name];
    var v = script && script.getAttribute("data-" + attr);
    return v !== null && v !== undefined ? v : fallback;
  }
  var VERSION = "1.0.0";
  var writeKey = opt("writeKey", "write-key", "");
  var endpoint = String(opt("endpoint", "endpoint", script ? new URL(script.src).origin : "")).replace(/\/$/, "");
  var flushInterval = Number(opt("flushInterval", "flush-interval", 1000));
  var batchSize = Number(opt("batchSize", "batch-size", 20));
  var autoPage = String(opt("autoPage", "auto-page", "true")) !== "false";
  var layerName = opt("dataLayer", "data-layer", "dataLayer");
  var DEFAULT_EVENTS = {
    view_item: "Product Viewed",
    add_to_cart: "Product Added",
    remove_from_cart: "Product Removed",
    view_cart: "Cart Viewed",
    begin_checkout: "Checkout Started",
    purchase: "Order Completed"
  };
  var layerEvents = Object.assign({}, DEFAULT_EVENTS, cfg.dataLayerEvents || {});
  var PENDING = "pfy_pending", COOKIE = "pfy_aid", USER = "pfy_uid", CART = "pfy_cart";

  function uuid() {
    if (w.crypto && w.crypto.randomUUID) return w.crypto.randomUUID();
    return "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx".replace(/[xy]/g, function (c) {
      var r = (Math.random() * 16) | 0;
      return (c === "x" ? r : (r & 3) | 8).toString(16);
    });
  }
  function store(key, value) {
    try {
      if (value === undefined) w.localStorage.removeItem(key);
      else w.localStorage.setItem(key, JSON.stringify(value));
    } catch (e) { /* storage may be disabled */ }
  }
  function load(key) {
    try { return JSON.parse(w.localStorage.getItem(key) || "null"); } catch (e) { return null; }
  }
  function cookie(name, value) {
    if (value === undefined) {
      var m = d.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
      return m ? decodeURIComponent(m[1]) : null;
    }
    var secure = w.location.protocol === "https:" ? "; Secure" : "";
    d.cookie = name + "=" + encodeURIComponent(value) + "; Max-Age=31536000; Path=/; SameSite=Lax" + secure;
    return value;
  }
  function anonymousId() { return cookie(COOKIE) || cookie(COOKIE, uuid()); }
  function cartId() { var c = load(CART); if (!c) { c = uuid(); store(CART, c); } return c; }

  function campaign() {
    var out = {}, keys = { utm_source: "source", utm_medium: "medium", utm_campaign: "name",
      utm_term: "term", utm_content: "content" };
    var params = new URLSearchParams(w.location.search);
    Object.keys(keys).forEach(function (k) { if (params.get(k)) out[keys[k]] = params.get(k); });
    return Object.keys(out).length ? out : undefined;
  }
  function context() {
    var ctx = {
      library: { name: "personify-collect.js", version: VERSION },
      page: { path: w.location.pathname, referrer: d.referrer, search: w.location.search,
        title: d.title, url: w.location.href },
      userAgent: navigator.userAgent,
      locale: navigator.language,
      screen: { width: w.screen.width, height: w.screen.height }
    };
    try { ctx.timezone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { /* old */ }
    var c = campaign();
    if (c) ctx.campaign = c;
    return ctx;
  }

  var queue = [], timer = null, inflight = load(PENDING) || [], backoff = 0, sending = false;
  function message(type, fields) {
    var m = Object.assign({ type: type, messageId: uuid(), anonymousId: anonymousId(),
      timestamp: new Date().toISOString(), context: context() }, fields);
    var user = load(USER);
    if (user && !m.userId) m.userId = user;
    queue.push(m);
    if (queue.length >= batchSize) flush(); else schedule(flushInterval);
  }
  function schedule(ms) { if (!timer) timer = setTimeout(function () { timer = null; flush(); }, ms); }
  function body(batch) { return JSON.stringify({ batch: batch, sentAt: new Date().toISOString(), writeKey: writeKey }); }
  function flush() {
    if (queue.length) {
      for (var i = 0; i < queue.length; i += batchSize) inflight.push(queue.slice(i, i + batchSize));
      queue = [];
      store(PENDING, inflight);
    }
    if (sending || !inflight.length) return Promise.resolve();
    sending = true;
    var batch = inflight[0];
    // text/plain keeps it a "simple" cross-origin request: no preflight
    return fetch(endpoint + "/v1/batch", { method: "POST", body: body(batch), keepalive: true,
      headers: { "Content-Type": "text/plain" }, mode: "cors", credentials: "omit" })
      .then(function (r) {
        sending = false;
        if (r.ok || (r.status >= 400 && r.status < 500 && r.status !== 408 && r.status !== 429)) {
          done(batch); backoff = 0;
          if (inflight.length) return flush();
        } else { retry(r.headers.get("Retry-After")); }
      }, function () { sending = false; retry(null); });
  }
  function done(batch) { inflight = inflight.filter(function (b) { return b !== batch; }); store(PENDING, inflight.length ? inflight : undefined); }
  function retry(after) {
    backoff = Math.min(backoff ? backoff * 2 : 1000, 30000);
    var wait = after && !isNaN(Number(after)) ? Number(after) * 1000 : backoff;
    schedule(wait + Math.random() * 250);
  }
  function beacon() {
    if (queue.length) {
      for (var i = 0; i < queue.length; i += batchSize) inflight.push(queue.slice(i, i + batchSize));
      queue = [];
      store(PENDING, inflight);
    }
    if (!navigator.sendBeacon) return;
    // the answer is never seen: batches stay pending and are resent (and deduplicated) later
    inflight.forEach(function (batch) {
      navigator.sendBeacon(endpoint + "/v1/batch", new Blob([body(batch)], { type: "text/plain" }));
    });
  }

  function product(item) {
    var p = { product_id: item.item_id, sku: item.item_id, name: item.item_name,
      category: item.item_category, brand: item.item_brand, variant: item.item_variant,
      price: item.price, quantity: item.quantity, coupon: item.coupon, position: item.index };
    Object.keys(p).forEach(function (k) { if (p[k] === undefined) delete p[k]; });
    return p;
  }
  function fromLayer(entry, name) {
    var props = {};
    Object.keys(entry).forEach(function (k) {
      if (k !== "event" && k !== "ecommerce" && k.indexOf("gtm.") !== 0) props[k] = entry[k];
    });
    var ec = entry.ecommerce;
    if (ec && typeof ec === "object") {
      var items = Array.isArray(ec.items) ? ec.items : [];
      var single = name === "Product Viewed" || name === "Product Added" || name === "Product Removed";
      if (single && items.length) Object.assign(props, product(items[0]));
      else if (items.length) props.products = items.map(product);
      if (ec.transaction_id !== undefined) props.order_id = ec.transaction_id;
      if (ec.value !== undefined) { props.value = ec.value; if (name === "Order Completed") { props.total = ec.value; props.revenue = ec.value; } }
      ["currency", "tax", "shipping", "coupon"].forEach(function (k) { if (ec[k] !== undefined) props[k] = ec[k]; });
    }
    if (/^(Product Added|Product Removed|Cart Viewed|Checkout Started|Order Completed)$/.test(name) && !props.cart_id) props.cart_id = cartId();
    return props;
  }
  function onLayer(entry) {
    if (!entry || typeof entry !== "object" || typeof entry.event !== "string") return;
    var name = layerEvents[entry.event];
    if (!name) return;
    if (name === "page") return api.page(entry.name, fromLayer(entry, name));
    if (name === "identify") return api.identify(entry.userId, entry.traits || {});
    api.track(name, fromLayer(entry, name));
    if (name === "Order Completed") store(CART, undefined);
  }

  var api = {
    VERSION: VERSION,
    track: function (event, properties) { message("track", { event: String(event), properties: properties || {} }); },
    page: function (name, properties) {
      var fields = { properties: Object.assign({ path: w.location.pathname, url: w.location.href, title: d.title, referrer: d.referrer }, properties || {}) };
      if (name) fields.name = String(name);
      message("page", fields);
    },
    identify: function (userId, traits) {
      if (userId !== undefined && userId !== null && userId !== "") store(USER, String(userId));
      message("identify", { userId: load(USER) || undefined, traits: traits || {} });
    },
    reset: function () { store(USER, undefined); store(CART, undefined); cookie(COOKIE, uuid()); },
    flush: function () { return flush(); },
    user: function () { return { anonymousId: anonymousId(), userId: load(USER) }; }
  };
  w.__personify = api;
  var stub = w.analytics;
  w.analytics = api;
  w.personify = api;
  if (Array.isArray(stub)) stub.forEach(function (call) { if (api[call[0]]) api[call[0]].apply(api, call.slice(1)); });

  var layer = (w[layerName] = w[layerName] || []);
  layer.forEach(onLayer);
  var push = layer.push;
  layer.push = function () {
    var out = push.apply(layer, arguments);
    for (var i = 0; i < arguments.length; i++) { try { onLayer(arguments[i]); } catch (e) { /* never break the page */ } }
    return out;
  };
  d.addEventListener("visibilitychange", function () { if (d.visibilityState === "hidden") beacon(); });
  w.addEventListener("pagehide", beacon);
  if (autoPage) api.page();
  if (inflight.length) schedule(0);
})(window, document);
