// Cuttle portal: the little the pages need beyond HTML. Every page works
// without it except for live updates: the dashboard refreshing itself, and
// a task's log following the API's event stream.
(function () {
  "use strict";

  function signInAgain() {
    location.href = "/signin?next=" + encodeURIComponent(location.pathname + location.search);
  }

  // Fetches a fragment of this portal; null (after sending the browser to
  // sign in) when the session has ended.
  function fragment(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) {
        if (r.status === 401) { signInAgain(); return null; }
        if (!r.ok) { throw new Error(url + ": " + r.status); }
        return r.text();
      });
  }

  // Times: the server writes UTC; readers see their own clock.
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function localClock(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) { return null; }
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }
  // As the server words durations ("3 seconds", "1 minute").
  function duration(ms) {
    var secs = Math.max(0, Math.floor(ms / 1000));
    var n = secs, unit = "second";
    if (secs >= 3600) { n = Math.floor(secs / 3600); unit = "hour"; }
    else if (secs >= 60) { n = Math.floor(secs / 60); unit = "minute"; }
    return n + " " + unit + (n === 1 ? "" : "s");
  }
  function localizeTimes(root) {
    root.querySelectorAll("time.clock[datetime]").forEach(function (t) {
      var text = localClock(t.getAttribute("datetime"));
      if (text) { t.textContent = text; }
    });
    root.querySelectorAll("time.stamp[datetime]").forEach(function (t) {
      var d = new Date(t.getAttribute("datetime"));
      if (!isNaN(d.getTime())) { t.title = d.toLocaleString(); }
    });
  }

  // Buttons that ask first (Cancel, Abort, Fail, Ignore).
  document.addEventListener("click", function (e) {
    var b = e.target.closest("[data-confirm]");
    if (b && !window.confirm(b.getAttribute("data-confirm"))) { e.preventDefault(); }
  });

  // Boards (the dashboard, a project's releases): refetched every 3 s
  // while something on them is queued, running or waiting, else every 30 s
  // (someone else may deploy). The fragment is the board again, same id.
  function liveBoard(board) {
    var id = board.id;
    function schedule() {
      setTimeout(refresh, board.getAttribute("data-live") === "true" ? 3000 : 30000);
    }
    function refresh() {
      if (document.hidden) { schedule(); return; }
      fragment(board.getAttribute("data-refresh")).then(function (html) {
        if (html === null) { return; }
        var holder = document.createElement("div");
        holder.innerHTML = html; // the server escapes every value it renders
        var fresh = holder.querySelector("#" + id);
        if (fresh) {
          board.replaceWith(fresh);
          board = fresh;
          localizeTimes(board);
        }
        schedule();
      }).catch(schedule);
    }
    schedule();
  }

  // A task's page: follow the API's stream from the last line rendered.
  function taskPage(page) {
    var id = page.getAttribute("data-task");
    var tree = document.getElementById("log-tree");
    var header = document.getElementById("task-header");
    var icons = document.getElementById("icons");
    var shape = page.getAttribute("data-state") + "/" + page.getAttribute("data-pending");
    var statusKey = {
      Pending: "pending", Running: "running", Success: "success", Failed: "failed",
      Skipped: "skipped", SuccessWithWarning: "warning", Canceled: "canceled"
    };
    // Keep the newest line in view while the reader is at the bottom.
    var following = true;
    window.addEventListener("scroll", function () {
      following = window.innerHeight + window.scrollY >= document.body.scrollHeight - 60;
    }, { passive: true });

    function refreshHeader() {
      return fragment("/tasks/" + encodeURIComponent(id) + "/header").then(function (html) {
        if (html === null) { return; }
        header.innerHTML = html; // escaped by the server, as above
        localizeTimes(header);
      }).catch(function () {});
    }

    function byId(activityId) {
      return tree.querySelector('details[data-id="' + CSS.escape(activityId) + '"]');
    }

    function icon(key) {
      var found = icons && icons.content.querySelector('[data-icon="' + key + '"] svg');
      return found ? found.cloneNode(true) : document.createElement("span");
    }

    function element(tag, className, text) {
      var e = document.createElement(tag);
      if (className) { e.className = className; }
      if (text !== undefined) { e.textContent = text; }
      return e;
    }

    // Finds or makes an activity's node, built as the server builds it.
    function activity(a) {
      var node = byId(a.Id);
      if (!node) {
        node = element("details", "act");
        node.open = true;
        node.setAttribute("data-id", a.Id);
        var summary = element("summary");
        summary.append(element("span", "act-icon"), element("span", "name"),
          element("span", "status"), element("span", "times"));
        node.append(summary, element("div", "entries"));
        var parent = a.ParentId ? byId(a.ParentId) : null;
        (parent ? parent.querySelector(":scope > .entries") : tree).appendChild(node);
        var waiting = document.getElementById("log-waiting");
        if (waiting) { waiting.remove(); }
      }
      var key = statusKey[a.Status] || "pending";
      node.className = "act status-" + key;
      var s = node.querySelector(":scope > summary");
      s.querySelector(".name").textContent = a.Name;
      s.querySelector(".status").textContent = a.Status;
      s.querySelector(".act-icon").replaceChildren(icon(key));
      if (a.Started) {
        node.setAttribute("data-started", a.Started);
        var t = element("time", "clock", localClock(a.Started) || "");
        t.setAttribute("datetime", a.Started);
        var times = s.querySelector(".times");
        times.replaceChildren(t);
        if (a.Ended) {
          times.append(" · " + duration(Date.parse(a.Ended) - Date.parse(a.Started)));
        }
      }
    }

    function line(l) {
      var node = byId(l.ActivityId);
      if (!node) { return; }
      var li = element("div", "line cat-" + String(l.Category).toLowerCase());
      var t = element("time", "clock", localClock(l.OccurredAt) || "");
      t.setAttribute("datetime", l.OccurredAt);
      li.append(t, element("span", "lvl", l.Category), element("span", "msg", l.MessageText));
      if (l.Detail) { li.append(element("pre", "detail", l.Detail)); }
      // In time order among the node's children, as the server renders
      // them: a line written before a child started goes above it, even if
      // the stream delivers the child first.
      var entries = node.querySelector(":scope > .entries");
      var before = null;
      for (var c = entries.lastElementChild; c && c.tagName === "DETAILS"; c = c.previousElementSibling) {
        var started = c.getAttribute("data-started");
        if (started && started < l.OccurredAt) { break; }
        before = c;
      }
      entries.insertBefore(li, before);
      if (following) { window.scrollTo(0, document.body.scrollHeight); }
    }

    if (page.getAttribute("data-completed") === "true" || !window.EventSource) { return; }
    var source = new EventSource("/api/tasks/" + encodeURIComponent(id) +
      "/stream?since=" + encodeURIComponent(page.getAttribute("data-position")));
    source.addEventListener("activity", function (e) { activity(JSON.parse(e.data)); });
    source.addEventListener("log", function (e) { line(JSON.parse(e.data)); });
    source.addEventListener("task", function (e) {
      var t = JSON.parse(e.data);
      var now = t.State + "/" + t.HasPendingInterruptions;
      if (now !== shape) { shape = now; refreshHeader(); }
    });
    source.addEventListener("end", function () {
      source.close();
      page.setAttribute("data-completed", "true");
      refreshHeader();
    });
    source.onerror = function () {
      // A closed stream is not retried by the browser: most likely the
      // session ended, which refreshing the header finds out.
      if (source.readyState === EventSource.CLOSED) { refreshHeader(); }
    };
  }

  document.addEventListener("click", function (e) {
    var b = e.target.closest("[data-expand]");
    if (!b) { return; }
    var open = b.getAttribute("data-expand") === "all";
    document.querySelectorAll("#log-tree details").forEach(function (d) { d.open = open; });
  });

  localizeTimes(document);
  document.querySelectorAll("[data-refresh][id]").forEach(liveBoard);
  var task = document.getElementById("task");
  if (task) { taskPage(task); }
})();
