// The status page: polls /status.json every two seconds, shows the figures, turns counters
// into rates and draws the last five minutes as SVG polylines. No library, no other origin.
"use strict";

(function () {
  const POLL_MS = 2000;
  const POINTS = 150; // five minutes of points
  const history = { stored: [], lag: [], dead: [], hits: [], requests: [] };
  let previous = null;
  let updates = 0;

  const $ = (id) => document.getElementById(id);
  const number = (value) => Math.round(value).toLocaleString("en-US");
  const rate = (value) => (value >= 10 ? number(value) : value.toFixed(1));
  const sum = (counts) => Object.values(counts).reduce((a, b) => a + b, 0);

  function setText(id, text, level) {
    const element = $(id);
    element.textContent = text;
    if (level === undefined) {
      delete element.dataset.level;
    } else {
      element.dataset.level = level;
    }
  }

  function push(series, value) {
    series.push(value);
    if (series.length > POINTS) series.shift();
  }

  function draw(id, series) {
    const line = $(id).querySelector("polyline");
    const top = Math.max(1, ...series);
    const step = 300 / (POINTS - 1);
    const start = (POINTS - series.length) * step;
    line.setAttribute(
      "points",
      series.map((v, i) => `${(start + i * step).toFixed(1)},${(58 - (v / top) * 56).toFixed(1)}`).join(" "),
    );
  }

  function table(id, counts) {
    const body = $(id).querySelector("tbody");
    body.replaceChildren();
    const keys = Object.keys(counts).sort();
    if (keys.length === 0) {
      const row = body.insertRow();
      row.insertCell().textContent = "none";
      row.insertCell().textContent = "0";
    }
    for (const key of keys) {
      const row = body.insertRow();
      row.dataset.key = key;
      row.insertCell().textContent = key;
      row.insertCell().textContent = number(counts[key]);
    }
  }

  function consumer(status) {
    const state = status.consumer;
    if (state === null) {
      setText("consumer", "not run here");
      $("consumer-note").textContent = "this service runs the API only (serve)";
      return null;
    }
    setText("consumer", state.state, state.state === "running" ? "ok" : "bad");
    $("consumer-note").textContent =
      `pid ${state.pid ?? "—"}, ${state.restarts} restart${state.restarts === 1 ? "" : "s"}`;
    return state.state === "running" ? null : `the consumer is ${state.state}`;
  }

  function kafka(status) {
    if (status.consumer === null) {
      setText("kafka", "not watched here");
      return null;
    }
    if (status.consumer.state !== "running") {
      setText("kafka", "unknown");
      return null;
    }
    if (status.kafka === null) {
      setText("kafka", "not reported yet");
      return null;
    }
    const { brokers_up: up, brokers } = status.kafka;
    setText("kafka", `${up} of ${brokers} up`, up > 0 ? "ok" : "bad");
    return up > 0 ? null : "Kafka is unreachable: nothing is consumed";
  }

  function postgres(status) {
    setText("postgres", status.postgres.up ? "answering" : "down", status.postgres.up ? "ok" : "bad");
    $("postgres-note").textContent = status.postgres.up ? "" : status.postgres.detail;
    return status.postgres.up ? null : "PostgreSQL is unavailable: misses answer 503, cache hits still work";
  }

  function flow(status) {
    const orders = status.orders;
    setText("stored-total", number(orders.stored));
    setText("duplicates", number(orders.duplicate));
    setText("consumed", number(orders.consumed));
    setText("lag", number(orders.lag));
    const cache = status.cache;
    setText("cache", `${number(cache.entries)} of ${number(cache.capacity)}`);
    setText("evictions", number(cache.evictions));
    table("dead-letters", status.dead_letters);
    table("requests", status.requests);
    push(history.lag, orders.lag);
    if (previous !== null) {
      const seconds = Math.max(0.001, status.at - previous.at);
      const per = (now, then) => Math.max(0, now - then) / seconds;
      const storedRate = per(orders.stored, previous.orders.stored);
      const deadRate = per(sum(status.dead_letters), sum(previous.dead_letters));
      const requestRate = per(sum(status.requests), sum(previous.requests));
      const lookups = cache.hits + cache.misses - previous.cache.hits - previous.cache.misses;
      const ratio = lookups > 0 ? (cache.hits - previous.cache.hits) / lookups : null;
      setText("stored-rate", rate(storedRate));
      setText("dead-rate", rate(deadRate));
      setText("request-rate", rate(requestRate));
      setText("hit-ratio", ratio === null ? "— (no lookups)" : `${(100 * ratio).toFixed(1)} %`);
      push(history.stored, storedRate);
      push(history.dead, deadRate);
      push(history.requests, requestRate);
      push(history.hits, ratio === null ? 0 : ratio);
    }
    draw("chart-stored", history.stored);
    draw("chart-lag", history.lag);
    draw("chart-dead", history.dead);
    draw("chart-hits", history.hits);
    draw("chart-requests", history.requests);
  }

  function show(status) {
    const problems = [consumer(status), kafka(status), postgres(status)].filter((p) => p !== null);
    flow(status);
    const banner = $("banner");
    banner.textContent = problems.length ? problems.join(". ") + "." : "Everything answers.";
    banner.dataset.level = problems.length ? "bad" : "ok";
    previous = status;
    updates += 1;
    document.body.dataset.state = "live";
    document.body.dataset.updates = String(updates);
    $("updated").textContent = `updated ${new Date(status.at * 1000).toLocaleTimeString("en-US")}`;
  }

  async function poll() {
    try {
      const response = await fetch("/status.json", { cache: "no-store" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      show(await response.json());
    } catch (error) {
      document.body.dataset.state = "unreachable";
      const banner = $("banner");
      banner.textContent = `The service does not answer (${error.message}); retrying.`;
      banner.dataset.level = "bad";
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  poll();
})();
