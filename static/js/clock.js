// One clock for the browser side: writes an instant exactly as the server's
// `when` filter does (mqttadmin/lib/units.py): "2026-12-03 02:38:01 EST", in the
// zone the page was rendered in (<html data-time-zone>), named as the server's tz
// database names it (<html data-zone-labels>: offset in minutes -> name). Charts
// use it for their axes and legends, so a chart and a table agree.
//
// It also tells the server this browser's zone (the `tz` cookie), which the server
// uses unless the user picked a zone on the account page.
(() => {
  "use strict";

  const root = document.documentElement;
  const zone = root.dataset.timeZone || "UTC";
  let labels = {};
  try {
    labels = JSON.parse(root.dataset.zoneLabels || "{}");
  } catch (error) {
    labels = {};
  }

  const browserZone = (() => {
    try {
      return Intl.DateTimeFormat().resolvedOptions().timeZone || "";
    } catch (error) {
      return "";
    }
  })();
  if (browserZone && !document.cookie.split("; ").includes("tz=" + browserZone)) {
    const secure = window.location.protocol === "https:" ? "; secure" : "";
    document.cookie =
      "tz=" + browserZone + "; path=/; max-age=31536000; samesite=lax" + secure;
  }

  function formatter(timeZone) {
    return new Intl.DateTimeFormat("en-GB", {
      timeZone: timeZone,
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
      hourCycle: "h23",
      timeZoneName: "longOffset",
    });
  }

  // A zone this browser's Intl does not know (an old alias) falls back to UTC,
  // named as such, rather than breaking every chart on the page.
  let known = true;
  let parts;
  try {
    parts = formatter(zone);
  } catch (error) {
    known = false;
    parts = formatter("UTC");
  }

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  // "GMT-05:00" / "GMT+05:45" / "GMT" -> minutes east of UTC.
  function offsetMinutes(text) {
    const match = /([+-])(\d{1,2})(?::?(\d{2}))?/.exec(text || "");
    if (!match) {
      return 0;
    }
    const minutes = Number(match[2]) * 60 + Number(match[3] || 0);
    return match[1] === "-" ? -minutes : minutes;
  }

  // The name the server gives a zone without letters: "UTC-03", "UTC+05:45".
  function offsetLabel(minutes) {
    const sign = minutes < 0 ? "-" : "+";
    const abs = Math.abs(minutes);
    const rest = abs % 60;
    return "UTC" + sign + pad(Math.floor(abs / 60)) + (rest ? ":" + pad(rest) : "");
  }

  function fields(date) {
    const out = {};
    parts.formatToParts(date).forEach((part) => {
      out[part.type] = part.value;
    });
    return out;
  }

  // Seconds since the epoch (what the charts carry) -> "2026-12-03 02:38:01 EST".
  function format(seconds) {
    if (seconds == null || !isFinite(seconds)) {
      return "—";
    }
    const f = fields(new Date(seconds * 1000));
    const minutes = offsetMinutes(f.timeZoneName);
    const name = known
      ? labels[String(minutes)] || offsetLabel(minutes)
      : "UTC";
    return (
      f.year + "-" + f.month + "-" + f.day + " " +
      f.hour + ":" + f.minute + ":" + f.second + " " + name
    );
  }

  // uPlot's axis labels in 24 h, year-month-day order, like the tables: one row
  // per tick step ([step, first label, later labels when the day/year changes]).
  // The columns are uPlot's own: step, format, then the formats used when a
  // larger unit rolls over, and the mode (1: only on rollover).
  const NL = "\n";
  const axisValues = [
    [3600 * 24 * 365, "{YYYY}", null, null, null, null, null, null, 1],
    [3600 * 24 * 28, "{YYYY}-{MM}", NL + "{YYYY}", null, null, null, null, null, 1],
    [3600 * 24, "{MM}-{DD}", NL + "{YYYY}", null, null, null, null, null, 1],
    [3600, "{HH}:{mm}", NL + "{YYYY}-{MM}-{DD}", null, NL + "{MM}-{DD}", null, null, null, 1],
    [60, "{HH}:{mm}", NL + "{YYYY}-{MM}-{DD}", null, NL + "{MM}-{DD}", null, null, null, 1],
    [1, "{HH}:{mm}:{ss}", NL + "{YYYY}-{MM}-{DD}", null, NL + "{MM}-{DD}", null, null, null, 1],
    [0.001, ":{ss}.{fff}", NL + "{YYYY}-{MM}-{DD} {HH}:{mm}", null, NL + "{MM}-{DD} {HH}:{mm}", null, NL + "{HH}:{mm}", null, 1],
  ];

  // What a uPlot chart with a time x axis takes to speak the same clock: merge
  // into its options (tzDate), its first series (legend) and its first axis.
  function uplot() {
    const tzDate = window.uPlot && window.uPlot.tzDate
      ? (ts) => window.uPlot.tzDate(new Date(ts * 1000), known ? zone : "UTC")
      : undefined;
    return {
      tzDate: tzDate,
      xSeries: { label: known ? zone : "UTC", value: (u, ts) => format(ts) },
      // 24 h labels are wider than uPlot's default 50 px apart allows.
      xAxis: { values: axisValues, space: 80 },
    };
  }

  window.PortalClock = { format: format, zone: zone, uplot: uplot };
})();
