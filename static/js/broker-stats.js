// Charts of the broker page's Stats tab, drawn with the vendored uPlot: messages
// per second (received, sent) and clients connected, from the stats API's `series`
// (sampled every few seconds by the runtime). Refetched every 10 s while the
// section is on the page.
(function () {
  "use strict";

  var HEIGHT = 220;
  var REFRESH_MS = 10000;
  var MIN_SPAN_S = 300;
  var COLORS = { received: "#1f6feb", sent: "#1a9c4b", clients: "#8250df" };

  function widthOf(el) {
    return Math.max(280, Math.floor(el.getBoundingClientRect().width) || 600);
  }

  // One precision per series (rates to a tenth, client counts whole), so the
  // legend does not jump between 3, 3.333 and 2.5.
  function line(label, color, places) {
    return {
      label: label,
      stroke: color,
      width: 2,
      spanGaps: false,
      value: function (u, v) { return v == null ? "—" : v.toFixed(places); },
    };
  }

  function makeChart(el, series, data) {
    // Times on the axis and in the legend as the tables write them (clock.js).
    var clock = window.PortalClock ? window.PortalClock.uplot() : {};
    var plot = new window.uPlot({
      width: widthOf(el),
      height: HEIGHT,
      series: [Object.assign({}, clock.xSeries)].concat(series),
      tzDate: clock.tzDate,
      scales: {
        // At least MIN_SPAN_S wide: the first samples of a new broker are
        // seconds apart, and uPlot would label that range in milliseconds.
        x: {
          time: true,
          range: function (u, min, max) {
            if (min == null || max == null) {
              var now = Date.now() / 1000;
              return [now - MIN_SPAN_S, now];
            }
            return [Math.min(min, max - MIN_SPAN_S), max];
          },
        },
      },
      axes: [Object.assign({}, clock.xAxis), { size: 60 }],
    }, data, el);
    if ("ResizeObserver" in window) {
      new ResizeObserver(function () {
        plot.setSize({ width: widthOf(el), height: HEIGHT });
      }).observe(el);
    }
    return plot;
  }

  function start(section) {
    if (section.dataset.started || typeof window.uPlot !== "function") {
      return;
    }
    section.dataset.started = "1";
    var url = section.dataset.brokerStats;
    var messagesEl = section.querySelector('[data-stats-chart="messages"]');
    var clientsEl = section.querySelector('[data-stats-chart="clients"]');
    var empty = section.querySelector("[data-stats-empty]");
    var charts = { messages: null, clients: null };
    var timer = null;

    function render(series) {
      var t = series.t || [];
      if (empty) {
        empty.hidden = t.length > 0;
      }
      var messages = [t, series.messages_received_per_s, series.messages_sent_per_s];
      var clients = [t, series.clients_connected];
      if (!charts.messages) {
        charts.messages = makeChart(messagesEl, [
          line(section.dataset.labelReceived, COLORS.received, 1),
          line(section.dataset.labelSent, COLORS.sent, 1),
        ], messages);
        charts.clients = makeChart(clientsEl, [
          line(section.dataset.labelClients, COLORS.clients, 0),
        ], clients);
      } else {
        charts.messages.setData(messages);
        charts.clients.setData(clients);
      }
    }

    function refresh() {
      if (!document.body.contains(section)) {
        window.clearInterval(timer);
        return;
      }
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (body) { if (body && body.series) { render(body.series); } })
        .catch(function () { /* the next refresh tries again */ });
    }

    refresh();
    timer = window.setInterval(refresh, REFRESH_MS);
  }

  function startAll(root) {
    if (!root || !root.querySelectorAll) {
      return;
    }
    if (root.matches && root.matches("[data-broker-stats]")) {
      start(root);
    }
    root.querySelectorAll("[data-broker-stats]").forEach(start);
  }

  document.addEventListener("DOMContentLoaded", function () { startAll(document); });
  document.addEventListener("htmx:load", function (event) { startAll(event.detail.elt); });
})();
