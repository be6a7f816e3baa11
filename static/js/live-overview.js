// The overview's throughput chart: the last hour, a point a minute from the stored
// history (dashboard.selectors.throughput_history, rendered as JSON data next to
// the chart), then one live point a second from the overview socket
// (dashboard/partials/throughput_sample.html: a 10 s average). The x axis always
// spans the last hour, so uPlot picks minute ticks rather than milliseconds.
(() => {
  const SPAN_S = 3600;
  let chart = null;
  const xs = [];
  const ys = [];

  function load() {
    const source = document.getElementById("throughput-history");
    if (!source) {
      return;
    }
    let points = [];
    try {
      points = JSON.parse(source.textContent) || [];
    } catch (error) {
      points = [];
    }
    // Each point stands at the middle of the span it averages.
    for (const [at, rate] of points) {
      xs.push(at);
      ys.push(rate);
    }
  }

  function trim(now) {
    while (xs.length && xs[0] < now - SPAN_S) {
      xs.shift();
      ys.shift();
    }
  }

  function setup() {
    const el = document.getElementById("throughput-chart");
    if (!el || chart || typeof uPlot === "undefined") {
      return;
    }
    load();
    // Times on the axis and in the legend as the tables write them (clock.js).
    const clock = window.PortalClock ? window.PortalClock.uplot() : {};
    chart = new uPlot(
      {
        width: Math.max(el.clientWidth, 200),
        height: 180,
        scales: {
          x: {
            time: true,
            range: () => {
              const now = Date.now() / 1000;
              return [now - SPAN_S, now];
            },
          },
          // Rates start at zero: a calm hour is a flat line at the bottom.
          y: { range: (u, min, max) => [0, Math.max(1, (max || 0) * 1.1)] },
        },
        tzDate: clock.tzDate,
        axes: [Object.assign({}, clock.xAxis), { size: 50 }],
        series: [
          Object.assign({}, clock.xSeries),
          { label: "msg/s", stroke: "#1a73e8", width: 2, points: { show: false } },
        ],
      },
      [xs, ys],
      el,
    );
    // Follow the card's width: the layout reflows with the window (a phone).
    new ResizeObserver(() => {
      chart.setSize({ width: Math.max(el.clientWidth, 200), height: 180 });
    }).observe(el);
  }

  document.addEventListener("DOMContentLoaded", setup);

  document.addEventListener("htmx:wsAfterMessage", () => {
    const sample = document.getElementById("throughput-sample");
    if (!sample || sample.dataset.seen) {
      return;
    }
    sample.dataset.seen = "1";
    setup();
    const now = Date.now() / 1000;
    xs.push(now);
    ys.push(parseFloat(sample.value) || 0);
    trim(now);
    if (chart) {
      chart.setData([xs, ys]);
    }
  });
})();
