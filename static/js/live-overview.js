// The overview's throughput chart: the overview socket sends one sample a second
// (dashboard/partials/throughput_sample.html); this keeps the last five minutes.
(() => {
  const POINTS = 300;
  let chart = null;
  const xs = [];
  const ys = [];

  function setup() {
    const el = document.getElementById("throughput-chart");
    if (!el || chart || typeof uPlot === "undefined") {
      return;
    }
    // Times on the axis and in the legend as the tables write them (clock.js).
    const clock = window.PortalClock ? window.PortalClock.uplot() : {};
    chart = new uPlot(
      {
        width: Math.max(el.clientWidth, 200),
        height: 180,
        scales: { x: { time: true } },
        tzDate: clock.tzDate,
        axes: [Object.assign({}, clock.xAxis), {}],
        series: [
          Object.assign({}, clock.xSeries),
          { label: "msg/s", stroke: "#1a73e8", width: 2 },
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
    xs.push(Date.now() / 1000);
    ys.push(parseFloat(sample.value) || 0);
    if (xs.length > POINTS) {
      xs.shift();
      ys.shift();
    }
    if (chart) {
      chart.setData([xs, ys]);
    }
  });
})();
