// Draws the Topics tab's chart with the vendored uPlot. The panel renders its data
// as <script type="application/json"> (data, not code, so the CSP allows it) next to
// a <div data-topic-chart="<id of that script>">; panels arrive by HTMX, so every
// swap is scanned, and a div is drawn once.
(function () {
  "use strict";

  var COLORS = ["#1f6feb", "#d0312d", "#1a9c4b", "#e0a000", "#8250df", "#0a9396", "#bc4c00", "#6e7781"];
  var HEIGHT = 240;

  // One precision per series, as the server writes telemetry (mqttadmin/lib/
  // units.py key_precision): the most decimals any value needs, at most three.
  function decimalsOf(values) {
    var best = 0;
    values.forEach(function (v) {
      if (v == null || !isFinite(v)) {
        return;
      }
      var text = String(Math.round(v * 1000) / 1000);
      var dot = text.indexOf(".");
      if (dot >= 0 && text.indexOf("e") < 0) {
        best = Math.max(best, text.length - dot - 1);
      }
    });
    return Math.min(best, 3);
  }

  function widthOf(el) {
    return Math.max(280, Math.floor(el.getBoundingClientRect().width) || 600);
  }

  function draw(el) {
    if (el.dataset.drawn || typeof window.uPlot !== "function") {
      return;
    }
    var source = document.getElementById(el.dataset.topicChart);
    if (!source) {
      return;
    }
    var chart;
    try {
      chart = JSON.parse(source.textContent);
    } catch (error) {
      return;
    }
    var unit = chart.unit ? " " + chart.unit : "";
    // Times on the axis and in the legend as the tables write them (clock.js).
    var clock = window.PortalClock ? window.PortalClock.uplot() : {};
    var series = [Object.assign({}, clock.xSeries)].concat(chart.series.map(function (name, index) {
      var places = decimalsOf(chart.y[index] || []);
      return {
        label: name,
        stroke: COLORS[index % COLORS.length],
        width: 2,
        spanGaps: true,
        points: { show: chart.x.length <= 60 },
        value: function (u, v) { return v == null ? "—" : v.toFixed(places) + unit; },
      };
    }));
    var plot = new window.uPlot({
      width: widthOf(el),
      height: HEIGHT,
      series: series,
      scales: { x: { time: true } },
      tzDate: clock.tzDate,
      axes: [Object.assign({}, clock.xAxis), { values: function (u, ticks) { return ticks.map(function (v) { return v + unit; }); }, size: 70 }],
    }, [chart.x].concat(chart.y), el);
    el.dataset.drawn = "1";
    // Follow the panel's width (the layout reflows when the window changes).
    if ("ResizeObserver" in window) {
      new ResizeObserver(function () {
        plot.setSize({ width: widthOf(el), height: HEIGHT });
      }).observe(el);
    }
  }

  function drawAll(root) {
    if (!root || !root.querySelectorAll) {
      return;
    }
    if (root.matches && root.matches("[data-topic-chart]")) {
      draw(root);
    }
    root.querySelectorAll("[data-topic-chart]").forEach(draw);
  }

  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:load", function (event) { drawAll(event.detail.elt); });
})();
