// The plait dashboard page: polls /api/state once a second and redraws the five tabs.
// Everything from the cluster (names, errors) goes in through textContent or SVG
// attributes, never as markup; the plan's SVG comes from plait's own drawing, escaped there.
"use strict";
(function () {
  var SVG = "http://www.w3.org/2000/svg";
  var csrf = document.querySelector('meta[name="plait-csrf"]').content;
  var planNumber = -1, members = {}, lastState = null;
  // A big plan is redrawn at most every BIG_PLAN_MS: each get of a run submits a new plan,
  // and drawing one of 10,000 tasks costs the dashboard ~50 ms and the head ~10 ms.
  var BIG_PLAN_TASKS = 1000, BIG_PLAN_MS = 5000, planTasks = 0, planLoadedAt = 0;

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function svg(tag, attrs, text) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) node.textContent = String(text);
    return node;
  }
  function bytes(n) {
    if (n === null || n === undefined) return "–";
    var units = [["GiB", 1 << 30], ["MiB", 1 << 20], ["KiB", 1 << 10]];
    for (var i = 0; i < units.length; i++) {
      if (n >= units[i][1]) return (n / units[i][1]).toFixed(1) + " " + units[i][0];
    }
    return n + " B";
  }
  function when(t) { return new Date(t * 1000).toLocaleTimeString(); }
  function row(cells, attrs) {
    var tr = el("tr", attrs);
    cells.forEach(function (c) {
      var td = c instanceof Node ? el("td") : el("td", {}, c);
      if (c instanceof Node) td.appendChild(c);
      if (typeof c === "number") td.className = "num";
      tr.appendChild(td);
    });
    return tr;
  }
  function fill(tbody, rows) {
    tbody.replaceChildren.apply(tbody, rows);
  }
  function bar(parts, total, title) {
    var box = el("div", {"class": "bar", "title": title});
    parts.forEach(function (p) {
      var span = el("span", {"class": p[0]});
      span.style.width = (total > 0 ? Math.min(100, 100 * p[1] / total) : 0) + "%";
      box.appendChild(span);
    });
    return box;
  }

  // -- tabs ---------------------------------------------------------------------------------
  function planShown() { return (location.hash || "#cluster") === "#plan"; }
  function showTab() {
    var name = (location.hash || "#cluster").slice(1);
    // the plan is drawn only for a page showing it (a 10,000-task plan costs the dashboard
    // about 0.1 s of CPU to draw, and every get of a run submits a new one)
    if (name === "plan" && lastState && lastState.plan.number !== planNumber) loadPlan();
    document.querySelectorAll(".tab").forEach(function (t) {
      t.classList.toggle("active", t.id === "tab-" + name);
    });
    document.querySelectorAll("nav a").forEach(function (a) {
      a.classList.toggle("active", a.dataset.tab === name);
    });
  }
  window.addEventListener("hashchange", showTab);
  showTab();

  // -- Cluster ------------------------------------------------------------------------------
  function drawNodes(state) {
    var rows = state.cluster.map(function (n) {
      var s = n.store, workers = el("span", {"class": "workers"});
      ["busy", "idle", "blocked", "standin", "actor", "starting"].forEach(function (k) {
        if (n.workers[k]) workers.appendChild(el("span", {"class": "badge " + k}, n.workers[k] + " " + k));
      });
      var store = el("div");
      if (s) {
        var used = s.pinned + s.memory;
        store.appendChild(bar([["pinned", s.pinned], ["memory", s.memory], ["free", s.free]],
                              s.capacity, "pinned " + bytes(s.pinned) + ", in memory " +
                              bytes(s.memory) + ", free " + bytes(s.free)));
        store.appendChild(el("div", {"class": "bartext"}, bytes(used) + " of " + bytes(s.capacity) +
                             (s.spilled ? ", " + bytes(s.spilled) + " spilled" : "") +
                             " · " + s.objects + " objects"));
      }
      return row([n.node + (n.head ? " (head)" : ""), n.address, workers, store,
                  n.cpu === null ? "–" : n.cpu.toFixed(0) + " %", bytes(n.rss),
                  n.heartbeat_age.toFixed(1) + " s ago"],
                 {"class": "node-row", "data-node": n.node});
    });
    state.dead.forEach(function (d) {
      var tr = row([d.node, d.address, "", "died " + when(d.time) + ": " + d.reason, "", "", ""],
                   {"class": "node-row dead", "data-node": d.node});
      tr.firstChild.className = "node";
      rows.push(tr);
    });
    fill(document.querySelector("#nodes tbody"), rows);
  }

  function post(path, body) {
    return fetch(path, {method: "POST", credentials: "same-origin",
                        headers: {"Content-Type": "application/json", "X-Plait-CSRF": csrf},
                        body: JSON.stringify(body)});
  }
  function drawActors(state) {
    fill(document.querySelector("#actors tbody"), state.actors.map(function (a) {
      var action = "";
      if (a.state !== "dead") {
        action = el("button", {"class": "kill", "type": "button", "data-actor": a.actor}, "kill");
      }
      return row([a.actor, a["class"], a.name || "–", a.node, a.state, a.restarts,
                  a.detached ? "yes" : "no", action],
                 {"class": "actor-row " + a.state, "data-actor": a.actor, "data-state": a.state});
    }));
    document.getElementById("actors-empty").hidden = state.actors.length > 0;
  }
  document.getElementById("actors").addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("button.kill");
    if (!button) return;
    var actor = button.getAttribute("data-actor");
    if (!window.confirm("Kill actor " + actor + " for good? Its pending calls fail.")) return;
    button.disabled = true;
    post("/api/kill-actor", {actor: actor});
  });

  // -- Run ----------------------------------------------------------------------------------
  function drawProgress(state) {
    fill(document.querySelector("#progress tbody"), state.run.map(function (r) {
      var over = r.done + r.failed;
      return row([r.function,
                  bar([["done", r.done], ["failed", r.failed], ["running", r.running],
                       ["waiting", r.waiting]], r.total, over + " of " + r.total + " over"),
                  r.waiting, r.running, r.done, r.failed, r.retried, r.total],
                 {"class": "progress-row", "data-function": r.function});
    }));
  }
  function hue(name) {
    var h = 0;
    for (var i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) % 360;
    return "hsl(" + h + ",60%,62%)";
  }
  function drawStream(state) {
    var s = state.stream, lanes = [], laneOf = {};
    state.cluster.forEach(function (n) {
      n.worker_list.forEach(function (w) { lanes.push(n.node + " w" + w.index); });
    });
    s.tasks.forEach(function (t) { if (lanes.indexOf(t.lane) < 0) lanes.push(t.lane); });
    lanes.forEach(function (l, i) { laneOf[l] = i; });
    var W = 900, left = 90, H = 18 * lanes.length + 24;
    var x = function (t) { return left + (W - left - 10) * (t + s.seconds) / s.seconds; };
    var root = svg("svg", {width: W, height: H, "class": "stream"});
    lanes.forEach(function (l, i) {
      root.appendChild(svg("text", {x: 4, y: 18 * i + 13, "font-size": 11}, l));
      root.appendChild(svg("line", {x1: left, x2: W - 10, y1: 18 * i + 17, y2: 18 * i + 17,
                                    stroke: "#eee"}));
    });
    s.tasks.forEach(function (t) {
      var r = svg("rect", {x: x(t.start), y: 18 * laneOf[t.lane] + 2,
                           width: Math.max(1, x(t.end) - x(t.start)), height: 14,
                           fill: t.ok ? hue(t.function) : "#e53935", "class": "task-bar"});
      r.appendChild(svg("title", {}, t.function + " " + t.task + " (" +
                                      (t.end - t.start).toFixed(3) + " s)"));
      root.appendChild(r);
    });
    var firstLane = function (node) {
      for (var i = 0; i < lanes.length; i++) if (lanes[i].indexOf(node + " ") === 0) return i;
      return 0;
    };
    s.transfers.forEach(function (t) {
      var line = svg("line", {x1: x(t.start), x2: x(t.end), y1: 18 * firstLane(t.src) + 9,
                              y2: 18 * firstLane(t.dst) + 9, stroke: "#d81b60",
                              "stroke-width": 1.5, "class": "transfer"});
      line.appendChild(svg("title", {}, t.object + ": " + bytes(t.nbytes) + " " + t.src +
                                        " → " + t.dst));
      root.appendChild(line);
    });
    for (var sec = -s.seconds; sec <= 0; sec += 10) {
      root.appendChild(svg("text", {x: x(sec), y: H - 4, "font-size": 10, "text-anchor": "middle",
                                    fill: "#777"}, sec + " s"));
    }
    document.getElementById("stream").replaceChildren(root);
  }

  // -- Plan ---------------------------------------------------------------------------------
  function loadPlan() {
    return fetch("/api/plan", {credentials: "same-origin"}).then(function (r) { return r.json(); })
      .then(function (plan) {
        planNumber = plan.number;
        planTasks = plan.tasks || 0;
        planLoadedAt = Date.now();
        members = plan.members || {};
        var box = document.getElementById("plan");
        if (!plan.svg) { box.replaceChildren(el("p", {"class": "empty"}, "No plan submitted yet.")); return; }
        var doc = new DOMParser().parseFromString(plan.svg, "image/svg+xml");
        box.replaceChildren(document.importNode(doc.documentElement, true));
        if (lastState) colourPlan(lastState);
      });
  }
  function colourPlan(state) {
    var states = state.plan.states, counts = {waiting: 0, running: 0, done: 0, failed: 0};
    Object.keys(states).forEach(function (t) { counts[states[t]] += 1; });
    document.querySelectorAll("#plan g.plait-vertex[data-key]").forEach(function (g) {
      var ids = members[g.getAttribute("data-key")];
      if (!ids) return;
      // tasks past the head's cap (census.MAX_PLAN_STATES) have no state: left uncoloured
      var seen = ids.map(function (t) { return states[t]; }).filter(Boolean), word = "done";
      if (!seen.length) return;
      if (seen.indexOf("failed") >= 0) word = "failed";
      else if (seen.indexOf("running") >= 0) word = "running";
      else if (seen.indexOf("waiting") >= 0) word = seen.indexOf("done") >= 0 ? "running" : "waiting";
      g.setAttribute("class", g.getAttribute("class").replace(/ state-\w+/, "") + " state-" + word);
    });
    document.getElementById("plan-summary").textContent = "(#" + state.plan.number + ": " +
      counts.done + " done, " + counts.running + " running, " + counts.waiting + " waiting, " +
      counts.failed + " failed · bytes moved: predicted " + bytes(state.plan.predicted) +
      ", actual " + bytes(state.plan.moved) + ")" +
      (planNumber !== state.plan.number ? " · drawn: plan #" + planNumber : "");
  }
  document.getElementById("plan").addEventListener("click", function (event) {
    var g = event.target.closest && event.target.closest("g.plait-task");
    if (!g) return;
    var task = (members[g.getAttribute("data-key")] || [])[0];
    var state = lastState && lastState.plan.states[task];
    if (!task || (state !== "waiting" && state !== "running")) return;
    if (!window.confirm("Cancel task " + task + "?")) return;
    post("/api/cancel", {task: task});
  });

  // -- Objects and Events -------------------------------------------------------------------
  function drawObjects(state) {
    fill(document.querySelector("#objects tbody"), state.objects.map(function (o) {
      return row([o.id, bytes(o.nbytes), o.state, o.node, o.copies.join(", "),
                  o.holders.join(", ") || "nobody (being freed)", o.created_by],
                 {"class": "object-row", "data-state": o.state, "data-object": o.id});
    }));
  }
  function drawEvents(state) {
    var list = document.getElementById("events");
    list.replaceChildren.apply(list, state.events.map(function (e) {
      var li = el("li", {"class": e.kind});
      li.appendChild(el("span", {"class": "when"}, when(e.time)));
      li.appendChild(el("b", {}, e.kind + " "));
      li.appendChild(document.createTextNode(e.text));
      if (e.traceback) li.appendChild(el("pre", {}, e.traceback));
      return li;
    }));
    if (!state.events.length) list.appendChild(el("li", {"class": "empty"}, "Nothing yet."));
  }

  // -- polling ------------------------------------------------------------------------------
  function poll() {
    fetch("/api/state", {credentials: "same-origin"}).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    }).then(function (state) {
      lastState = state;
      var status = document.getElementById("status");
      status.textContent = "session " + state.session + " · " + state.cluster.length +
        " node(s) · " + bytes(state.bytes_moved) + " moved · " + when(state.time);
      status.className = "status";
      drawNodes(state); drawActors(state); drawProgress(state); drawStream(state); drawObjects(state);
      drawEvents(state);
      if (!planShown()) return;
      if (state.plan.number !== planNumber &&
          (planTasks <= BIG_PLAN_TASKS || Date.now() - planLoadedAt >= BIG_PLAN_MS)) {
        return loadPlan();
      }
      colourPlan(state);
    }).catch(function (error) {
      var status = document.getElementById("status");
      status.textContent = "no answer from the head: " + error.message;
      status.className = "status bad";
    }).then(function () { setTimeout(poll, 1000); });
  }
  poll();
})();
