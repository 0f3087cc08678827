// Order lookup page: plain DOM, no framework, no build step.
//
// Safe by construction: every value from the server reaches the page through textContent,
// createElement, dataset or a fixed-prefix href ("tel:", "mailto:", "?uid="), never as HTML.
"use strict";

(() => {
  const UID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
  const UID_CHAR = /^[A-Za-z0-9_-]$/;
  const UID_MAX = 64;
  const RECENT_LIMIT = 20;
  const REQUEST_TIMEOUT_MS = 15000;
  const EMPTY = "—";
  const BASE_TITLE = document.title;

  const byId = (id) => document.getElementById(id);
  const ui = {
    form: byId("search-form"),
    input: byId("uid-input"),
    status: byId("status"),
    statusTitle: byId("status-title"),
    statusDetail: byId("status-detail"),
    retry: byId("retry-button"),
    order: byId("order"),
    orderTitle: byId("order-title"),
    orderFacts: byId("order-facts"),
    orderTech: byId("order-tech"),
    deliveryFacts: byId("delivery-facts"),
    paymentAmount: byId("payment-amount"),
    paymentFacts: byId("payment-facts"),
    itemsBody: byId("items-body"),
    itemsFoot: byId("items-foot"),
    itemsTitle: byId("items-title"),
    rawToggle: byId("raw-toggle"),
    rawPre: byId("raw-json"),
    copyButton: byId("copy-button"),
    copyStatus: byId("copy-status"),
    recentList: byId("recent-list"),
    recentStatus: byId("recent-status"),
    recentRefresh: byId("recent-refresh"),
  };

  // ---------------------------------------------------------------- DOM helpers

  /** An element with a class, optional attributes and children (strings become text nodes). */
  function h(tag, className, children = [], attrs = {}) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
    for (const child of [].concat(children)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  /** Text for a value that may be empty: an em dash stands in for "nothing". */
  function text(value) {
    if (value === null || value === undefined || value === "") return EMPTY;
    return String(value);
  }

  function clear(node) {
    node.replaceChildren();
  }

  // ---------------------------------------------------------------- formatting

  const dateTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  const fullDateTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "long" });
  const clockFormat = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });
  const integerFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
  const percentFormat = new Intl.NumberFormat(undefined, { style: "percent", maximumFractionDigits: 0 });
  const moneyFormats = new Map();

  /** An amount in whole units of `currency`, e.g. 1817 USD → "$1,817.00" in en-US. */
  function money(amount, currency) {
    if (typeof amount !== "number" || !Number.isFinite(amount)) return text(amount);
    if (!moneyFormats.has(currency)) {
      let format = null;
      try {
        format = new Intl.NumberFormat(undefined, { style: "currency", currency: String(currency) });
      } catch {
        format = null; // not a currency code Intl knows: fall back to "1,817 XYZ"
      }
      moneyFormats.set(currency, format);
    }
    const format = moneyFormats.get(currency);
    return format ? format.format(amount) : `${integerFormat.format(amount)} ${text(currency)}`;
  }

  /** A <time> element in the viewer's locale, or the raw value when it is not a date. */
  function timeElement(date, raw) {
    if (!(date instanceof Date) || Number.isNaN(date.getTime())) return h("span", "", text(raw));
    return h("time", "", dateTimeFormat.format(date), {
      datetime: date.toISOString(),
      title: fullDateTimeFormat.format(date),
    });
  }

  const fromRfc3339 = (value) => new Date(typeof value === "string" ? value : NaN);
  const fromUnixSeconds = (value) => new Date(typeof value === "number" ? value * 1000 : NaN);

  function plural(count, one, many) {
    return `${integerFormat.format(count)} ${count === 1 ? one : many}`;
  }

  /**
   * JSON.parse, except that integers too large for a JS number (chrt_id and nm_id are int64)
   * are kept as their exact digits instead of being rounded.
   */
  function parseJson(source) {
    return JSON.parse(source, (_key, value, context) => {
      if (typeof value === "number" && !Number.isSafeInteger(value) && context
          && typeof context.source === "string" && /^-?\d+$/.test(context.source)) {
        return context.source;
      }
      return value;
    });
  }

  /** Indent a JSON text without parsing it, so every number is shown exactly as received. */
  function prettyJson(source, indent = "  ") {
    let out = "";
    let depth = 0;
    let inString = false;
    let escaped = false;
    for (let i = 0; i < source.length; i += 1) {
      const ch = source[i];
      if (inString) {
        out += ch;
        if (escaped) escaped = false;
        else if (ch === "\\") escaped = true;
        else if (ch === '"') inString = false;
        continue;
      }
      switch (ch) {
        case '"':
          inString = true;
          out += ch;
          break;
        case "{":
        case "[": {
          let next = i + 1;
          while (next < source.length && /\s/.test(source[next])) next += 1;
          if (source[next] === (ch === "{" ? "}" : "]")) {
            out += ch + source[next];
            i = next;
          } else {
            depth += 1;
            out += `${ch}\n${indent.repeat(depth)}`;
          }
          break;
        }
        case "}":
        case "]":
          depth = Math.max(0, depth - 1);
          out += `\n${indent.repeat(depth)}${ch}`;
          break;
        case ",":
          out += `,\n${indent.repeat(depth)}`;
          break;
        case ":":
          out += ": ";
          break;
        case " ":
        case "\t":
        case "\n":
        case "\r":
          break;
        default:
          out += ch;
      }
    }
    return out;
  }

  // ---------------------------------------------------------------- status

  /** Set the page state: `data-state` is stable for tests and styling; the text is announced. */
  function setStatus(state, title, detail = "", { retry = false } = {}) {
    ui.status.dataset.state = state;
    ui.statusTitle.textContent = title;
    ui.statusDetail.textContent = detail;
    ui.statusDetail.hidden = !detail;
    ui.retry.hidden = !retry;
    ui.status.setAttribute("aria-busy", state === "loading" ? "true" : "false");
  }

  function idleStatus() {
    setStatus("idle", "Enter an order ID, or pick one of the recent orders.");
  }

  /** Why `uid` is not an order id, in words; "" if it is one. */
  function uidProblem(uid) {
    if (uid === "") return "Type an order ID first.";
    if (uid.length > UID_MAX) {
      return `It is ${integerFormat.format(uid.length)} characters long; order IDs have at most ${UID_MAX}.`;
    }
    const bad = Array.from(uid).find((ch) => !UID_CHAR.test(ch));
    if (bad !== undefined) {
      const shown = /\s/.test(bad) ? "a space" : `“${bad}”`;
      return `It contains ${shown}; order IDs use only letters A–Z and a–z, digits, “_” and “-”.`;
    }
    return "";
  }

  function markInputInvalid(invalid) {
    if (invalid) ui.input.setAttribute("aria-invalid", "true");
    else ui.input.removeAttribute("aria-invalid");
  }

  function showInvalid(uid, detail) {
    cancelLookup();
    hideOrder();
    markInputInvalid(true);
    const title = uid === "" ? "Enter an order ID." : "That is not a valid order ID.";
    setStatus("invalid", title, detail || uidProblem(uid) || "Order IDs are 1–64 characters: letters, digits, “_” and “-”.");
  }

  // ---------------------------------------------------------------- order lookup

  let inFlight = null; // { controller, timedOut } of the lookup whose answer is awaited
  let lastUid = null; // the id of the last lookup, for "Try again"
  let shownUid = null; // the id of the order on screen

  function cancelLookup() {
    if (inFlight) inFlight.controller.abort();
    inFlight = null;
  }

  function hideOrder() {
    ui.order.hidden = true;
    ui.order.classList.remove("is-stale");
    ui.order.removeAttribute("aria-busy");
    shownUid = null;
    document.title = BASE_TITLE;
    markCurrentRecent();
  }

  async function readProblem(response) {
    try {
      const body = await response.json();
      return body && typeof body === "object" ? body : null;
    } catch {
      return null;
    }
  }

  /** Fetch and show one order; `focus` moves focus to the result (used from the recent list). */
  async function lookup(uid, { focus = false } = {}) {
    cancelLookup();
    const request = { controller: new AbortController(), timedOut: false };
    inFlight = request;
    lastUid = uid;
    ui.input.value = uid;
    markInputInvalid(false);
    setStatus("loading", `Looking up order “${uid}”…`);
    if (!ui.order.hidden) {
      ui.order.classList.add("is-stale");
      ui.order.setAttribute("aria-busy", "true");
    }
    const timer = setTimeout(() => {
      request.timedOut = true;
      request.controller.abort();
    }, REQUEST_TIMEOUT_MS);

    let response;
    let body;
    try {
      response = await fetch(`/order/${encodeURIComponent(uid)}`, {
        headers: { Accept: "application/json" },
        signal: request.controller.signal,
      });
      body = response.ok ? await response.text() : null;
    } catch {
      if (inFlight !== request) return; // superseded by a newer lookup
      inFlight = null;
      hideOrder();
      setStatus(
        "network-error",
        request.timedOut ? "The order service did not answer in time." : "Could not reach the order service.",
        "Check your network connection, then try again.",
        { retry: true },
      );
      focusResult(focus);
      return;
    } finally {
      clearTimeout(timer);
    }
    if (inFlight !== request) return;

    if (response.ok) {
      let order = null;
      try {
        order = parseJson(body);
      } catch {
        order = null;
      }
      inFlight = null;
      if (!order || typeof order !== "object" || Array.isArray(order)) {
        hideOrder();
        setStatus("unavailable", "The order service sent an answer this page cannot read.",
          "Try again in a moment.", { retry: true });
        focusResult(focus);
        return;
      }
      renderOrder(order, body);
      setStatus("found", "Order found.", foundSummary(order));
      focusResult(focus, true);
      return;
    }

    const problem = await readProblem(response);
    if (inFlight !== request) return;
    inFlight = null;
    hideOrder();
    if (response.status === 404) {
      setStatus("not-found", "No order with this ID.",
        `Nothing is stored under “${uid}”. Check the ID for typos, or pick one of the recent orders.`);
    } else if (response.status === 400) {
      markInputInvalid(true);
      setStatus("invalid", "That is not a valid order ID.",
        (problem && typeof problem.detail === "string" && problem.detail) || uidProblem(uid));
    } else if (response.status === 503) {
      setStatus("unavailable", "The order service is temporarily unavailable.",
        "Its database cannot be reached right now. Try again in a moment.", { retry: true });
    } else {
      setStatus("unavailable", "The order service could not answer.",
        `It replied with HTTP ${response.status}${problem && problem.title ? ` (${problem.title})` : ""}. Try again in a moment.`,
        { retry: true });
    }
    focusResult(focus);
  }

  function focusResult(focus, found = false) {
    if (!focus) return;
    (found ? ui.orderTitle : ui.status).focus();
  }

  function foundSummary(order) {
    const items = Array.isArray(order.items) ? order.items : [];
    const payment = order.payment || {};
    const parts = [plural(items.length, "item", "items"), money(payment.amount, payment.currency)];
    const created = fromRfc3339(order.date_created);
    if (!Number.isNaN(created.getTime())) parts.push(`created ${dateTimeFormat.format(created)}`);
    return parts.join(" · ");
  }

  // ---------------------------------------------------------------- rendering

  /** Fill a <dl> with [label, value] pairs; a value may be a string or a node. */
  function fillFacts(dl, facts) {
    clear(dl);
    for (const [label, value, className] of facts) {
      dl.append(h("div", "facts__row", [h("dt", "", label), h("dd", className || "", value)]));
    }
  }

  function link(href, label) {
    return h("a", "", label, { href });
  }

  function renderOrder(order, source) {
    const delivery = order.delivery || {};
    const payment = order.payment || {};
    const items = Array.isArray(order.items) ? order.items : [];
    const currency = payment.currency;

    shownUid = String(order.order_uid);
    document.title = `Order ${shownUid} · ${BASE_TITLE}`;
    ui.orderTitle.textContent = text(order.order_uid);

    fillFacts(ui.orderFacts, [
      ["Track number", text(order.track_number), "mono"],
      ["Created", timeElement(fromRfc3339(order.date_created), order.date_created)],
      ["Customer", text(order.customer_id)],
      ["Delivery service", text(order.delivery_service)],
      ["Entry", text(order.entry)],
      ["Locale", text(order.locale)],
    ]);
    fillFacts(ui.orderTech, [
      ["SM ID", text(order.sm_id)],
      ["Shard key", text(order.shardkey)],
      ["OOF shard", text(order.oof_shard)],
      ["Internal signature", text(order.internal_signature), "mono"],
    ]);

    const place = [delivery.zip, delivery.city].filter((part) => part).join(" ");
    const addressLines = [delivery.address, place, delivery.region].filter((line) => line);
    const address = h("address", "");
    addressLines.forEach((line, index) => {
      if (index > 0) address.append(h("br", ""));
      address.append(String(line));
    });
    fillFacts(ui.deliveryFacts, [
      ["Recipient", text(delivery.name)],
      ["Phone", delivery.phone ? link(`tel:${delivery.phone}`, String(delivery.phone)) : EMPTY],
      ["Email", delivery.email ? link(`mailto:${delivery.email}`, String(delivery.email)) : EMPTY],
      ["Address", addressLines.length ? address : EMPTY],
    ]);

    clear(ui.paymentAmount);
    ui.paymentAmount.append(
      h("span", "amount__label", "Amount"),
      h("span", "amount__value", money(payment.amount, currency)),
    );
    fillFacts(ui.paymentFacts, [
      ["Goods", money(payment.goods_total, currency), "num"],
      ["Delivery", money(payment.delivery_cost, currency), "num"],
      ["Customs fee", money(payment.custom_fee, currency), "num"],
      ["Paid", timeElement(fromUnixSeconds(payment.payment_dt), payment.payment_dt)],
      ["Provider", text(payment.provider)],
      ["Bank", text(payment.bank)],
      ["Currency", text(currency)],
      ["Transaction", text(payment.transaction), "mono"],
      ["Request ID", text(payment.request_id), "mono"],
    ]);

    renderItems(items, currency);

    ui.rawPre.textContent = prettyJson(source);
    ui.copyStatus.textContent = "";
    ui.copyStatus.removeAttribute("data-state");

    ui.order.classList.remove("is-stale");
    ui.order.removeAttribute("aria-busy");
    ui.order.hidden = false;
    markCurrentRecent();
  }

  function renderItems(items, currency) {
    clear(ui.itemsBody);
    clear(ui.itemsFoot);
    ui.itemsTitle.textContent = `Items (${integerFormat.format(items.length)})`;
    let priceSum = 0;
    let totalSum = 0;
    for (const item of items) {
      const it = item || {};
      if (typeof it.price === "number") priceSum += it.price;
      if (typeof it.total_price === "number") totalSum += it.total_price;
      const sale = typeof it.sale === "number" && it.sale > 0 ? percentFormat.format(it.sale / 100) : EMPTY;
      const ids = [
        it.nm_id !== undefined ? `Article ${it.nm_id}` : null,
        it.chrt_id !== undefined ? `chrt ${it.chrt_id}` : null,
      ].filter(Boolean).join(" · ");
      ui.itemsBody.append(h("tr", "", [
        h("th", "items__name", [
          h("span", "items__title", text(it.name)),
          ids ? h("span", "items__ids", ids) : null,
        ], { scope: "row" }),
        h("td", "items__brand", text(it.brand)),
        h("td", "", text(it.size)),
        h("td", "num", money(it.price, currency)),
        h("td", "num", sale),
        h("td", "num strong", money(it.total_price, currency)),
        h("td", "", h("span", "badge", text(it.status), { title: "Item status code" })),
      ]));
    }
    ui.itemsFoot.append(h("tr", "", [
      h("th", "", `Total, ${plural(items.length, "item", "items")}`, { scope: "row", colspan: "3" }),
      h("td", "num", money(priceSum, currency)),
      h("td", "num", ""),
      h("td", "num strong", money(totalSum, currency)),
      h("td", "", ""),
    ]));
  }

  // ---------------------------------------------------------------- raw JSON

  function setRawExpanded(expanded) {
    ui.rawToggle.setAttribute("aria-expanded", String(expanded));
    ui.rawToggle.textContent = expanded ? "Hide JSON" : "Show JSON";
    ui.rawPre.hidden = !expanded;
  }

  function copyMessage(message, state) {
    ui.copyStatus.textContent = message;
    ui.copyStatus.dataset.state = state;
  }

  function selectRawJson() {
    setRawExpanded(true);
    const range = document.createRange();
    range.selectNodeContents(ui.rawPre);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    ui.rawPre.focus();
  }

  async function copyJson() {
    const json = ui.rawPre.textContent;
    try {
      if (!navigator.clipboard || !window.isSecureContext) throw new Error("no clipboard API");
      await navigator.clipboard.writeText(json);
      copyMessage("Copied the JSON to the clipboard.", "copied");
      return;
    } catch {
      // Not allowed here (plain http on another host, or permission refused): select it instead.
    }
    selectRawJson();
    let copied = false;
    try {
      copied = document.execCommand("copy");
    } catch {
      copied = false;
    }
    if (copied) copyMessage("Copied the JSON to the clipboard.", "copied");
    else copyMessage("Could not copy automatically. The JSON is selected: press Ctrl+C (⌘C on a Mac) to copy it.", "failed");
  }

  // ---------------------------------------------------------------- recent orders

  let recentRequest = null;

  function markCurrentRecent() {
    for (const anchor of ui.recentList.querySelectorAll("a[data-uid]")) {
      if (anchor.dataset.uid === shownUid) anchor.setAttribute("aria-current", "true");
      else anchor.removeAttribute("aria-current");
    }
  }

  function setRecentStatus(state, message) {
    ui.recentStatus.dataset.state = state;
    ui.recentStatus.textContent = message;
  }

  async function loadRecent() {
    if (recentRequest) recentRequest.abort();
    const controller = new AbortController();
    recentRequest = controller;
    const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
    ui.recentRefresh.disabled = true;
    ui.recentList.setAttribute("aria-busy", "true");
    setRecentStatus("loading", "Loading recent orders…");
    let summaries = null;
    let failure = "";
    try {
      const response = await fetch(`/orders?limit=${RECENT_LIMIT}`, {
        headers: { Accept: "application/json" },
        signal: controller.signal,
      });
      if (response.ok) {
        summaries = await response.json();
        if (!Array.isArray(summaries)) failure = "The server sent an answer this page cannot read.";
      } else if (response.status >= 500) {
        failure = "The order service is unavailable right now.";
      } else {
        failure = `The order service replied with HTTP ${response.status}.`;
      }
    } catch {
      if (recentRequest !== controller) return;
      failure = "Could not reach the order service.";
    } finally {
      clearTimeout(timer);
    }
    if (recentRequest !== controller) return;
    recentRequest = null;
    ui.recentRefresh.disabled = false;
    ui.recentList.removeAttribute("aria-busy");
    if (failure) {
      setRecentStatus("error", `${failure} Use Refresh to try again.`);
      return;
    }
    renderRecent(summaries);
    setRecentStatus(summaries.length ? "ready" : "empty",
      summaries.length ? `Updated ${clockFormat.format(new Date())}` : "No orders yet.");
  }

  function renderRecent(summaries) {
    clear(ui.recentList);
    for (const summary of summaries) {
      if (!summary || typeof summary.order_uid !== "string") continue;
      const uid = summary.order_uid;
      const anchor = h("a", "recent__link", [
        h("span", "recent__uid mono", uid, { title: uid }),
        h("span", "recent__amount", money(summary.amount, summary.currency)),
        h("span", "recent__meta", [
          timeElement(fromRfc3339(summary.date_created), summary.date_created),
          " · ",
          typeof summary.item_count === "number" ? plural(summary.item_count, "item", "items") : EMPTY,
        ]),
        h("span", "recent__customer", ["Customer ", h("span", "recent__customer-id", text(summary.customer_id))]),
      ], { href: urlFor(uid) });
      anchor.dataset.uid = uid;
      ui.recentList.append(h("li", "recent__item", anchor));
    }
    markCurrentRecent();
  }

  // ---------------------------------------------------------------- navigation

  function uidFromLocation() {
    return new URLSearchParams(window.location.search).get("uid");
  }

  /** This page's address for `uid` (the path is kept: /, /info/ or /order.html). */
  function urlFor(uid) {
    const params = new URLSearchParams();
    if (uid !== null) params.set("uid", uid);
    const query = params.toString();
    return `${window.location.pathname}${query ? `?${query}` : ""}`;
  }

  /** A lookup the user asked for: it gets its own history entry, so it can be shared. */
  function navigate(uid, options) {
    if (uidFromLocation() !== uid) window.history.pushState({ uid }, "", urlFor(uid));
    lookup(uid, options);
  }

  /** Show what the address asks for (on load, and on back/forward). */
  function route() {
    const uid = uidFromLocation();
    if (uid === null || uid === "") {
      cancelLookup();
      hideOrder();
      ui.input.value = "";
      markInputInvalid(false);
      idleStatus();
      return;
    }
    if (uidProblem(uid)) {
      ui.input.value = uid;
      showInvalid(uid);
      return;
    }
    lookup(uid);
  }

  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    const uid = ui.input.value.trim();
    ui.input.value = uid;
    if (uidProblem(uid)) {
      showInvalid(uid);
      ui.input.focus();
      return;
    }
    navigate(uid);
  });

  ui.input.addEventListener("input", () => markInputInvalid(false));

  ui.retry.addEventListener("click", () => {
    if (lastUid !== null) lookup(lastUid, { focus: true });
  });

  ui.rawToggle.addEventListener("click", () => {
    setRawExpanded(ui.rawToggle.getAttribute("aria-expanded") !== "true");
  });

  ui.copyButton.addEventListener("click", () => {
    copyJson();
  });

  ui.recentRefresh.addEventListener("click", () => {
    loadRecent();
  });

  ui.recentList.addEventListener("click", (event) => {
    const anchor = event.target instanceof Element ? event.target.closest("a[data-uid]") : null;
    if (!anchor || event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return; // new tab etc.
    event.preventDefault();
    navigate(anchor.dataset.uid, { focus: true });
  });

  window.addEventListener("popstate", route);

  route();
  loadRecent();
})();
