// Live status on the runs page: one EventSource for the whole page (not one per row)
// on /ui/events, which sends an event per change of any run. Rows already shown get their
// new status; a new run is added at the top of the first page when it matches the filters
// (a new run made by another API process, whose change says too little to show it, brings
// a "new runs" notice with a refresh link instead). Without JavaScript the page still lists the
// runs, and its Refresh link reloads them.
(function () {
  "use strict";
  var table = document.getElementById("runs");
  if (!table || !window.EventSource) { return; }
  var body = table.tBodies[0];
  var live = document.getElementById("live");
  var news = document.getElementById("news");
  var wanted = table.dataset;

  function keyName(id) {
    var options = document.querySelectorAll("#key-names option");
    for (var i = 0; i < options.length; i++) {
      if (options[i].value === id) { return options[i].textContent; }
    }
    return id;
  }

  function cell(row, text, className) {
    var td = row.insertCell(-1);
    td.textContent = text == null ? "" : String(text);
    if (className) { td.className = className; }
    return td;
  }

  function matches(change) {
    return (!wanted.status || wanted.status === change.status) &&
      (!wanted.model || wanted.model === change.model) &&
      (!wanted.key || wanted.key === change.apiKeyId);
  }

  function addRow(change) {
    var row = body.insertRow(0);
    row.id = "run-" + change.runId;
    var link = document.createElement("a");
    link.href = "/ui/runs/" + encodeURIComponent(change.runId);
    link.textContent = change.runId;
    row.insertCell(-1).appendChild(link);
    cell(row, change.status, "status").dataset.status = change.status;
    cell(row, change.model);
    cell(row, keyName(change.apiKeyId));
    cell(row, change.prompt, "prompt");
    cell(row, change.createdAt);
    cell(row, change.cost == null ? "" : "$" + Number(change.cost).toFixed(4));
    var empty = document.getElementById("no-runs");
    if (empty) { empty.hidden = true; }
  }

  // Run ids sort by creation time: a run whose id sorts after the newest row shown was
  // made after this page was read.
  var newest = body.rows.length ? body.rows[0].id.slice("run-".length) : "";

  function onChange(event) {
    var change = JSON.parse(event.data);
    var row = document.getElementById("run-" + change.runId);
    if (row) {
      var status = row.querySelector("td.status");
      status.textContent = change.status;
      status.dataset.status = change.status;
    } else if (wanted.firstPage !== "yes" || change.runId <= newest) {
      return; // an older run, not on this page
    } else if (change.model) {
      if (matches(change)) {
        addRow(change);
        newest = change.runId;
      }
    } else {
      news.hidden = false; // made by another process: the change does not say enough
    }
  }

  var source = new EventSource(table.dataset.events);
  source.addEventListener("run", onChange);
  source.addEventListener("resync", function () { news.hidden = false; });
  source.onopen = function () { live.hidden = false; live.textContent = "live"; };
  source.onerror = function () { live.textContent = "reconnecting…"; };
})();
