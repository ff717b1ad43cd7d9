// tock's dashboard: plain JavaScript, no build step. Every figure comes from this node's API.
// The views live in the query string (/ui?view=job&app=A&name=N, /ui?app=A&prefix=P for the
// jobs of an app); the token lives in sessionStorage for the tab, taken once from the page's
// form or from #token=... in the URL, which is then removed from the address bar. It is sent
// as `Authorization: Bearer` when it is the admin token, as `dapr-api-token` to the Jobs API
// when it is an app token, and never in a URL. Every text from the API reaches the page
// through textContent only.
"use strict";

(function () {
  const POLL_MS = 2000;
  const CLUSTER_REFRESH_MS = 5000;
  // The live charts keep the last five minutes of polls.
  const WINDOW_POINTS = 150;
  const PAGE_SIZE = 20;
  const HISTORY_LIMIT = 20;
  const TOKEN_KEY = "tock.token";
  const TOKEN_KIND_KEY = "tock.tokenKind";
  const COLORS = ["#2f6fdf", "#e0782f", "#2fa36b", "#b8423c", "#8a5cc7", "#7d6b3a", "#d45aa0", "#4a9bb5"];
  const API = "/v1.0";

  const state = {
    token: sessionStorage.getItem(TOKEN_KEY) || "",
    tokenKind: sessionStorage.getItem(TOKEN_KIND_KEY) || "admin",
    routes: new Set(),
    timers: [],
  };

  // ---- small DOM helpers ------------------------------------------------------------------

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else if (key === "dataset") Object.assign(el.dataset, value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function svg(tag, attrs) {
    const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, String(value));
    return el;
  }

  function table(headers, rows, empty) {
    if (!rows.length) return h("p", { class: "muted" }, empty);
    return h(
      "table",
      {},
      h("thead", {}, h("tr", {}, headers.map((title) => h("th", {}, title)))),
      h("tbody", {}, rows),
    );
  }

  function relative(iso) {
    if (!iso) return "";
    const seconds = Math.round((Date.parse(iso) - Date.now()) / 1000);
    const size = Math.abs(seconds);
    const text =
      size < 90 ? `${size} s` : size < 5400 ? `${Math.round(size / 60)} min` : size < 172800
        ? `${Math.round(size / 3600)} h` : `${Math.round(size / 86400)} d`;
    return seconds >= 0 ? `in ${text}` : `${text} ago`;
  }

  function when(iso) {
    return iso ? h("span", { title: iso }, `${iso} (${relative(iso)})`) : h("span", { class: "muted" }, "—");
  }

  function notice(message, kind) {
    const box = document.getElementById("notice");
    box.textContent = message || "";
    box.className = kind || "error";
    box.hidden = !message;
  }

  function confirmAction(text) {
    const dialog = document.getElementById("confirm");
    document.getElementById("confirm-text").textContent = text;
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
      // Escape closes it without a value: never the last answer's "ok".
      dialog.returnValue = "";
      dialog.showModal();
    });
  }

  // ---- the API -----------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, body) {
      const detail = body && typeof body === "object" ? `${body.errorCode}: ${body.message}` : body;
      super(`${status} ${detail || ""}`.trim());
      this.status = status;
    }
  }

  // `kind` is "admin" for /admin/* (and /metrics), "jobs" for the Jobs API, "none" for what
  // needs no credential.
  function headersFor(kind, params) {
    const headers = {};
    if (kind === "none") return headers;
    const appToken = state.token && state.tokenKind === "app";
    if (state.token && state.tokenKind === "admin") headers["Authorization"] = `Bearer ${state.token}`;
    if (kind === "jobs") {
      if (appToken) headers["dapr-api-token"] = state.token;
      // With an app token, the token alone names the app.
      else headers["dapr-app-id"] = params.app;
      if (params.namespace && params.namespace !== "default") headers["dapr-namespace"] = params.namespace;
    }
    return headers;
  }

  async function api(method, path, options) {
    const { kind = "jobs", body, params = currentParams() } = options || {};
    const init = { method, headers: headersFor(kind, params), cache: "no-store" };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers["content-type"] = "application/json";
    }
    const reply = await fetch(path, init);
    const text = await reply.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (error) {
      data = text;
    }
    if (!reply.ok) throw new ApiError(reply.status, data);
    return data;
  }

  // Whether this node serves a route, by its OpenAPI path: the page offers only what exists.
  function serves(path) {
    return state.routes.has(path);
  }

  function jobPath(name, suffix) {
    return `${API}/jobs/${encodeURIComponent(name)}${suffix || ""}`;
  }

  // ---- navigation ----------------------------------------------------------------------------

  function currentParams() {
    const query = new URLSearchParams(location.search);
    const params = Object.fromEntries(query.entries());
    params.app = params.app || "default";
    params.namespace = params.namespace || "default";
    if (!params.view) params.view = query.has("app") || query.has("prefix") ? "jobs" : "cluster";
    return params;
  }

  function go(params) {
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) if (value) query.set(key, value);
    history.pushState(null, "", `/ui?${query}`);
    render();
  }

  function link(text, params) {
    const query = new URLSearchParams(params);
    return h("a", {
      href: `/ui?${query}`,
      onclick: (event) => {
        if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
        event.preventDefault();
        go(params);
      },
    }, text);
  }

  function every(ms, action) {
    state.timers.push(setInterval(action, ms));
  }

  function render() {
    for (const timer of state.timers) clearInterval(timer);
    state.timers = [];
    notice("");
    const params = currentParams();
    for (const anchor of document.querySelectorAll("nav a")) {
      anchor.classList.toggle("active", anchor.dataset.view === params.view);
    }
    const views = { cluster: clusterView, jobs: jobsView, job: jobView, deadletters: deadLettersView };
    const view = document.getElementById("view");
    view.replaceChildren();
    (views[params.view] || clusterView)(view, params).catch((error) => notice(error.message));
  }

  // ---- the cluster view ------------------------------------------------------------------------

  async function clusterView(root, params) {
    const summary = h("section", { id: "cluster-summary", class: "cards" });
    const members = h("section", { id: "members" });
    const ring = h("section", { id: "ring" });
    const live = h("section", { id: "live" },
      h("h2", {}, "Live"),
      h("div", { class: "charts" },
        h("figure", {},
          h("figcaption", {}, "Triggers per second (success and failure), per node"),
          h("div", { id: "chart-triggers", class: "chart" })),
        h("figure", {},
          h("figcaption", {}, "Lateness: delivery start after the due time, ms"),
          h("div", { id: "chart-lateness", class: "chart" }))),
      h("p", { id: "live-state", class: "muted" }, "Waiting for the first two polls…"));
    root.append(h("h1", {}, "Cluster"), summary, h("div", { class: "split" }, members, ring), live);
    charts.attach();
    const refresh = async () => {
      try {
        const status = await api("GET", "/admin/cluster", { kind: "admin", params });
        drawCluster(status, summary, members, ring);
      } catch (error) {
        notice(error.status === 401 ? `The cluster view needs the admin token: ${error.message}` : error.message);
      }
    };
    await refresh();
    every(CLUSTER_REFRESH_MS, refresh);
  }

  function drawCluster(status, summary, members, ring) {
    const card = (label, value, id) => h("div", { class: "card" }, h("span", { class: "muted" }, label), h("strong", { id }, value));
    summary.replaceChildren(
      card("this node", `${status.node} (${status.role})`, "this-node"),
      card("leader", status.leader || "none", "leader"),
      card("term", status.term),
      card("epoch", status.epoch),
      card("commit / applied", `${status.commitIndex} / ${status.appliedIndex}`),
      card("jobs", status.jobs, "job-count"),
    );
    const total = status.members.reduce((sum, m) => sum + m.partitions, 0) || 1;
    const rows = status.members.map((m, k) =>
      h("tr", { dataset: { member: m.id } },
        h("td", {}, h("span", { class: "swatch", style: `background:${COLORS[k % COLORS.length]}` }), m.id),
        h("td", {}, m.id === status.leader ? "leader" : "follower"),
        h("td", { class: m.alive ? "ok" : "bad" }, m.alive ? "live" : "dead"),
        h("td", { class: "num" }, m.partitions),
        h("td", { class: "num" }, `${((100 * m.partitions) / total).toFixed(1)} %`),
        h("td", {}, h("a", { href: `${location.protocol}//${m.http}/ui` }, m.http)),
        h("td", {}, m.raft)));
    members.replaceChildren(
      h("h2", {}, `Members (epoch ${status.epoch})`),
      table(["id", "role", "liveness", "partitions", "share", "http", "raft"], rows, "No members yet."),
    );
    ring.replaceChildren(h("h2", {}, "Ring: partition shares"), donut(status.members));
  }

  // A donut of each member's share of the ring's partitions, hand-drawn in SVG.
  function donut(members) {
    const radius = 60;
    const circumference = 2 * Math.PI * radius;
    const total = members.reduce((sum, m) => sum + m.partitions, 0);
    const picture = svg("svg", { viewBox: "0 0 160 160", width: 180, height: 180, role: "img", id: "ring-donut" });
    const title = svg("title");
    title.textContent = members.map((m) => `${m.id}: ${m.partitions}`).join(", ");
    picture.append(title);
    picture.append(svg("circle", { cx: 80, cy: 80, r: radius, fill: "none", stroke: "#e4e7ec", "stroke-width": 26 }));
    let offset = 0;
    members.forEach((m, k) => {
      if (!total || !m.partitions) return;
      const length = (circumference * m.partitions) / total;
      picture.append(svg("circle", {
        cx: 80, cy: 80, r: radius, fill: "none",
        stroke: COLORS[k % COLORS.length], "stroke-width": 26,
        "stroke-dasharray": `${length} ${circumference - length}`,
        "stroke-dashoffset": -offset,
        transform: "rotate(-90 80 80)",
        "data-member": m.id,
      }));
      offset += length;
    });
    const label = svg("text", { x: 80, y: 85, "text-anchor": "middle", class: "donut-label" });
    label.textContent = `${total} partitions`;
    picture.append(label);
    const legend = h("ul", { class: "legend" }, members.map((m, k) =>
      h("li", {}, h("span", { class: "swatch", style: `background:${COLORS[k % COLORS.length]}` }),
        `${m.id}: ${m.partitions}${m.alive ? "" : " (dead)"}`)));
    return h("div", { class: "donut" }, picture, legend);
  }

  // ---- the live charts -------------------------------------------------------------------------

  // Polls /admin/stats for as long as the page is open, whatever the view, so that coming back
  // to the cluster view shows the last minutes at once.
  const charts = {
    times: [],
    rates: new Map(), // node -> [triggers per second]
    mean: [],
    p99: [],
    previous: new Map(), // node -> its last counters
    plots: {},
    nodes: "",
    stopped: false,

    start() {
      this.poll();
      setInterval(() => this.poll(), POLL_MS);
    },

    async poll() {
      if (this.stopped) return;
      let answer;
      try {
        answer = await api("GET", "/admin/stats", { kind: "admin" });
      } catch (error) {
        // Without the admin token every poll would fail alike: wait for a new token.
        if (error.status === 401) this.stopped = true;
        this.say(`Live charts unavailable: ${error.message}`);
        return;
      }
      this.add(answer.nodes);
      this.draw();
    },

    add(nodes) {
      const point = this.times.length;
      this.times.push(Date.now() / 1000);
      let latencyCount = 0;
      let latencySum = 0;
      let merged = null;
      const errors = [];
      for (const stats of nodes) {
        if (stats.error) {
          errors.push(`${stats.node}: ${stats.error}`);
          continue;
        }
        if (!this.rates.has(stats.node)) this.rates.set(stats.node, new Array(point).fill(null));
        const before = this.previous.get(stats.node);
        this.previous.set(stats.node, stats);
        let rate = null;
        if (before) {
          const seconds = (stats.timeMs - before.timeMs) / 1000;
          const attempts = (t) => t.success + t.failed;
          const delta = attempts(stats.triggers) - attempts(before.triggers);
          const count = stats.latency.count - before.latency.count;
          // A counter that went down is a node that restarted: no rate for this interval.
          if (seconds > 0 && delta >= 0 && count >= 0) {
            rate = delta / seconds;
            latencyCount += count;
            latencySum += stats.latency.sumSeconds - before.latency.sumSeconds;
            const buckets = stats.latency.buckets.map(([bound, n], i) => [bound, n - (before.latency.buckets[i] || [0, 0])[1]]);
            merged = merged ? merged.map(([bound, n], i) => [bound, n + buckets[i][1]]) : buckets;
          }
        }
        this.rates.get(stats.node).push(rate);
      }
      for (const series of this.rates.values()) if (series.length <= point) series.push(null);
      this.mean.push(latencyCount ? (1000 * latencySum) / latencyCount : null);
      this.p99.push(latencyCount ? 1000 * percentile(merged, latencyCount, 0.99) : null);
      if (this.times.length > WINDOW_POINTS) {
        this.times.shift();
        this.mean.shift();
        this.p99.shift();
        for (const series of this.rates.values()) series.shift();
      }
      const polled = nodes.length - errors.length;
      this.say(`${polled} node${polled === 1 ? "" : "s"} polled every ${POLL_MS / 1000} s${errors.length ? "; no answer from " + errors.join(", ") : ""}`);
    },

    totals() {
      return this.times.map((_, i) => {
        let sum = null;
        for (const series of this.rates.values()) if (series[i] !== null) sum = (sum || 0) + series[i];
        return sum;
      });
    },

    say(text) {
      const line = document.getElementById("live-state");
      if (line) line.textContent = text;
    },

    // Called when the cluster view is drawn: its chart boxes are new.
    attach() {
      for (const plot of Object.values(this.plots)) plot.destroy();
      this.plots = {};
      this.nodes = "";
      this.draw();
    },

    draw() {
      const triggersBox = document.getElementById("chart-triggers");
      const latenessBox = document.getElementById("chart-lateness");
      if (!triggersBox || !latenessBox || this.times.length < 2) return;
      const nodes = [...this.rates.keys()];
      const totals = this.totals();
      const width = Math.max(280, triggersBox.clientWidth || 480);
      if (this.nodes !== nodes.join(",")) {
        // The set of nodes changed: new series, so new charts.
        for (const plot of Object.values(this.plots)) plot.destroy();
        triggersBox.replaceChildren();
        latenessBox.replaceChildren();
        this.nodes = nodes.join(",");
        const axes = (unit) => [{}, { label: unit, size: 56 }];
        this.plots.triggers = new uPlot({
          width, height: 220, axes: axes("per s"),
          series: [{}, { label: "total", stroke: "#1d2433", width: 2 },
            ...nodes.map((node, k) => ({ label: node, stroke: COLORS[k % COLORS.length], width: 1 }))],
        }, [this.times, totals, ...nodes.map((node) => this.rates.get(node))], triggersBox);
        this.plots.lateness = new uPlot({
          width, height: 220, axes: axes("ms"),
          series: [{}, { label: "mean", stroke: "#2f6fdf", width: 2 }, { label: "p99 (bucket bound)", stroke: "#b8423c", width: 1, dash: [6, 4] }],
        }, [this.times, this.mean, this.p99], latenessBox);
      } else {
        this.plots.triggers.setData([this.times, totals, ...nodes.map((node) => this.rates.get(node))]);
        this.plots.lateness.setData([this.times, this.mean, this.p99]);
      }
      // What was drawn, for people reading the page's source and for the browser tests.
      const drawn = totals.filter((v) => v !== null);
      triggersBox.dataset.points = String(drawn.length);
      triggersBox.dataset.max = String(Math.max(0, ...drawn));
      latenessBox.dataset.points = String(this.mean.filter((v) => v !== null).length);
    },
  };

  // The upper bound of the bucket holding the q-quantile of `count` samples.
  function percentile(buckets, count, q) {
    const wanted = q * count;
    for (const [bound, n] of buckets || []) if (n >= wanted) return bound;
    const last = (buckets || []).at(-1);
    return last ? last[0] : 0;
  }

  // ---- the jobs view ---------------------------------------------------------------------------

  async function jobsView(root, params) {
    const form = h("form", { class: "filters", id: "jobs-filter" },
      h("label", {}, "app ", h("input", { name: "app", value: params.app, required: true, size: 16 })),
      h("label", {}, "namespace ", h("input", { name: "namespace", value: params.namespace, size: 12 })),
      h("label", {}, "name prefix ", h("input", { name: "prefix", value: params.prefix || "", size: 16, placeholder: "any" })),
      h("button", { type: "submit" }, "Search"));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const data = new FormData(form);
      go({ view: "jobs", app: data.get("app"), namespace: data.get("namespace"), prefix: data.get("prefix") });
    });
    const list = h("section", { id: "jobs" });
    root.append(h("h1", {}, `Jobs of ${params.app}`), form, list);
    // Paging: the cursor of every page shown so far, to go back as well as forward.
    const cursors = [params.cursor || ""];
    const show = async () => {
      const cursor = cursors.at(-1);
      const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
      if (params.prefix) query.set("prefix", params.prefix);
      if (cursor) query.set("cursor", cursor);
      const page = await api("GET", `${API}/jobs?${query}`, { params });
      const rows = page.jobs.map((job) =>
        h("tr", { dataset: { job: job.name } },
          h("td", {}, link(job.name, { view: "job", app: params.app, namespace: params.namespace, name: job.name })),
          h("td", {}, job.schedule || (job.dueTime ? `once at ${job.dueTime}` : "")),
          h("td", {}, when(job.status.nextTrigger)),
          h("td", {}, when(job.status.lastTrigger)),
          h("td", { class: "num" }, job.status.count),
          h("td", {}, jobState(job))));
      const pager = h("div", { class: "pager" },
        h("button", { type: "button", disabled: cursors.length === 1, onclick: () => { cursors.pop(); show().catch((e) => notice(e.message)); } }, "← Previous"),
        h("span", { class: "muted" }, `page ${cursors.length}`),
        h("button", { type: "button", id: "next-page", disabled: !page.nextCursor, onclick: () => { cursors.push(page.nextCursor); show().catch((e) => notice(e.message)); } }, "Next →"));
      list.replaceChildren(
        table(["name", "schedule", "next trigger", "last trigger", "count", "state"], rows,
          params.prefix ? `No job of ${params.app} starts with "${params.prefix}".` : `${params.app} has no jobs.`),
        pager);
    };
    await show();
  }

  function jobState(job) {
    if (job.status.error) return h("span", { class: "badge bad", title: job.status.error }, "quarantined");
    if (job.status.paused) return h("span", { class: "badge warn" }, "paused");
    return h("span", { class: "badge ok" }, "active");
  }

  // ---- a job's page ----------------------------------------------------------------------------

  async function jobView(root, params) {
    const name = params.name || "";
    const actions = h("div", { class: "actions", id: "job-actions" });
    const body = h("div", { class: "split" });
    const upcoming = h("section", { id: "upcoming" });
    const historyBox = h("section", { id: "history" });
    root.append(
      h("p", {}, link(`← jobs of ${params.app}`, { view: "jobs", app: params.app, namespace: params.namespace })),
      h("h1", {}, `Job ${name}`), actions, body, upcoming, historyBox);

    const act = async (label, method, suffix, success) => {
      try {
        await api(method, jobPath(name, suffix), { params });
        notice(success, "info");
        await refresh();
      } catch (error) {
        notice(`${label} failed: ${error.message}`);
      }
    };
    const operation = (suffix) => serves(`${API}/jobs/{name}${suffix}`);
    const button = (label, suffix, success, id) =>
      h("button", {
        type: "button", id,
        disabled: !operation(suffix),
        title: operation(suffix) ? null : "this node does not serve this operation",
        onclick: () => act(label, "POST", suffix, success),
      }, label);

    const refresh = async () => {
      const job = await api("GET", jobPath(name), { params });
      const paused = Boolean(job.status.paused);
      actions.replaceChildren(
        paused
          ? button("Resume", "/resume", "Resumed: it fires from its next occurrence.", "resume")
          : button("Pause", "/pause", "Paused: its occurrences are skipped until it is resumed.", "pause"),
        button("Run now", "/run", "One extra trigger is on its way.", "run"),
        h("button", {
          type: "button", class: "danger", id: "delete",
          onclick: async () => {
            if (!(await confirmAction(`Delete job ${name} of ${params.app}? It stops firing at once.`))) return;
            try {
              await api("DELETE", jobPath(name), { params });
              go({ view: "jobs", app: params.app, namespace: params.namespace });
              notice(`Deleted ${name}.`, "info");
            } catch (error) {
              notice(`Delete failed: ${error.message}`);
            }
          },
        }, "Delete"),
        jobState(job));
      const { status, ...definition } = job;
      const statusRows = [
        ["count", status.count],
        ["last trigger", when(status.lastTrigger)],
        ["next trigger", when(status.nextTrigger)],
        ["paused", paused ? "yes" : "no"],
        ...(status.error ? [["quarantined", status.error]] : []),
      ].map(([key, value]) => h("tr", {}, h("th", {}, key), h("td", {}, value)));
      body.replaceChildren(
        h("section", { id: "definition" }, h("h2", {}, "Definition"), h("pre", {}, JSON.stringify(definition, null, 2))),
        h("section", { id: "status" }, h("h2", {}, "Status"), h("table", { class: "keyed" }, h("tbody", {}, statusRows))));
      await drawUpcoming(name, params, upcoming);
      await drawHistory(name, params, historyBox);
    };
    await refresh();
    every(CLUSTER_REFRESH_MS, () => refresh().catch((error) => notice(error.message)));
  }

  async function drawUpcoming(name, params, box) {
    if (!serves(`${API}/jobs/{name}/next`)) {
      box.replaceChildren(h("h2", {}, "Next occurrences"), h("p", { class: "muted" }, "This node does not compute them."));
      return;
    }
    const answer = await api("GET", `${jobPath(name, "/next")}?count=10`, { params });
    box.replaceChildren(
      h("h2", {}, "Next 10 occurrences"),
      answer.next.length
        ? h("ol", { class: "times" }, answer.next.map((iso) => h("li", {}, when(iso))))
        : h("p", { class: "muted" }, "None: the job will not fire again."));
  }

  async function drawHistory(name, params, box) {
    if (!serves(`${API}/jobs/{name}/history`)) {
      box.replaceChildren(h("h2", {}, "History"), h("p", { class: "muted" }, "This node keeps no trigger history."));
      return;
    }
    const answer = await api("GET", `${jobPath(name, "/history")}?limit=${HISTORY_LIMIT}`, { params });
    const rows = answer.history.map((attempt) =>
      h("tr", {},
        h("td", {}, attempt.scheduledTime),
        h("td", { class: "num" }, attempt.attempt),
        h("td", {}, h("span", { class: `badge ${attempt.outcome === "success" ? "ok" : attempt.outcome === "skipped" ? "warn" : "bad"}` }, attempt.outcome)),
        h("td", {}, attempt.node),
        h("td", {}, attempt.startedAt || ""),
        h("td", { class: "num" }, attempt.durationMs ?? ""),
        h("td", { class: "num" }, attempt.status ?? "")));
    box.replaceChildren(
      h("h2", {}, "History (newest first)"),
      table(["scheduled", "attempt", "outcome", "node", "started", "ms", "status"], rows, "No attempt yet."));
  }

  // ---- dead letters ------------------------------------------------------------------------------

  async function deadLettersView(root, params) {
    root.append(h("h1", {}, `Dead letters of ${params.app}`));
    if (!serves(`${API}/deadletters`)) {
      root.append(h("p", { class: "muted", id: "no-deadletters" }, "This node keeps no dead letters."));
      return;
    }
    const form = h("form", { class: "filters" },
      h("label", {}, "app ", h("input", { name: "app", value: params.app, required: true, size: 16 })),
      h("label", {}, "job prefix ", h("input", { name: "prefix", value: params.prefix || "", size: 16, placeholder: "any" })),
      h("button", { type: "submit" }, "Search"));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const data = new FormData(form);
      go({ view: "deadletters", app: data.get("app"), namespace: params.namespace, prefix: data.get("prefix") });
    });
    const list = h("section", { id: "deadletters" });
    root.append(form, list);
    const cursors = [""];
    const show = async () => {
      const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
      if (params.prefix) query.set("prefix", params.prefix);
      if (cursors.at(-1)) query.set("cursor", cursors.at(-1));
      const page = await api("GET", `${API}/deadletters?${query}`, { params });
      const act = async (question, method, suffix, letter, done) => {
        if (!(await confirmAction(question))) return;
        try {
          await api(method, `${API}/deadletters/${encodeURIComponent(letter.id)}${suffix}`, { params });
          notice(done, "info");
          await show();
        } catch (error) {
          notice(error.message);
        }
      };
      const rows = page.deadLetters.map((letter) =>
        h("tr", { dataset: { deadletter: letter.id } },
          h("td", {}, link(letter.name, { view: "job", app: params.app, namespace: params.namespace, name: letter.name })),
          h("td", {}, letter.scheduledTime),
          h("td", { class: "num" }, letter.attempts),
          h("td", {}, letter.lastOutcome),
          h("td", {}, when(letter.failedAt)),
          h("td", { class: "actions" },
            h("button", { type: "button", class: "redrive", onclick: () => act(`Deliver ${letter.name} (${letter.scheduledTime}) again now?`, "POST", "/redrive", letter, `Redriven: ${letter.name}.`) }, "Redrive"),
            h("button", { type: "button", class: "danger", onclick: () => act(`Forget the dead letter of ${letter.name} (${letter.scheduledTime})?`, "DELETE", "", letter, `Forgotten: ${letter.name}.`) }, "Delete"))));
      list.replaceChildren(
        table(["job", "scheduled", "attempts", "last outcome", "failed", ""], rows, "No dead letters."),
        h("div", { class: "pager" },
          h("button", { type: "button", disabled: cursors.length === 1, onclick: () => { cursors.pop(); show().catch((e) => notice(e.message)); } }, "← Previous"),
          h("button", { type: "button", disabled: !page.nextCursor, onclick: () => { cursors.push(page.nextCursor); show().catch((e) => notice(e.message)); } }, "Next →")));
    };
    await show();
  }

  // ---- the token ---------------------------------------------------------------------------------

  function takeTokenFromFragment() {
    if (!location.hash.startsWith("#")) return;
    const fragment = new URLSearchParams(location.hash.slice(1));
    if (fragment.has("token")) {
      saveToken(fragment.get("token"), fragment.get("kind") === "app" ? "app" : "admin");
    }
    // The token must not stay in the address bar, the history or a copied link.
    history.replaceState(null, "", location.pathname + location.search);
  }

  function saveToken(token, kind) {
    state.token = token;
    state.tokenKind = kind;
    if (token) {
      sessionStorage.setItem(TOKEN_KEY, token);
      sessionStorage.setItem(TOKEN_KIND_KEY, kind);
    } else {
      sessionStorage.removeItem(TOKEN_KEY);
      sessionStorage.removeItem(TOKEN_KIND_KEY);
    }
    showToken();
  }

  function showToken() {
    document.getElementById("token-kind").value = state.tokenKind;
    document.getElementById("token").value = "";
    document.getElementById("token-state").textContent = state.token ? `${state.tokenKind} token set for this tab` : "no token";
    document.getElementById("token-forget").hidden = !state.token;
  }

  function wireToken() {
    document.getElementById("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      saveToken(document.getElementById("token").value.trim(), document.getElementById("token-kind").value);
      charts.stopped = false;
      render();
    });
    document.getElementById("token-forget").addEventListener("click", () => {
      saveToken("", "admin");
      render();
    });
    showToken();
  }

  // ---- start -------------------------------------------------------------------------------------

  async function start() {
    takeTokenFromFragment();
    wireToken();
    for (const anchor of document.querySelectorAll("nav a")) {
      anchor.addEventListener("click", (event) => {
        event.preventDefault();
        const params = currentParams();
        go({ view: anchor.dataset.view, app: params.app, namespace: params.namespace });
      });
    }
    window.addEventListener("popstate", render);
    try {
      const document_ = await api("GET", "/openapi.json", { kind: "none" });
      state.routes = new Set(Object.keys(document_.paths));
    } catch (error) {
      notice(`Could not read this node's API description: ${error.message}`);
    }
    render();
    charts.start();
    window.addEventListener("resize", () => charts.attach());
  }

  start();
})();
