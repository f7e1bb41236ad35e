// The campaign report's chart: one line per kind of event over time (uPlot, vendored).
(function () {
  const holder = document.getElementById("report-chart");
  const source = document.getElementById("report-data");
  if (!holder || !source || typeof uPlot === "undefined") return;
  const chart = JSON.parse(source.textContent);
  const colours = {
    sent: "#2857d6", delivered: "#1a7f37", opened: "#8250df", clicked: "#bf8700",
    bounced: "#cf222e", complained: "#953800", unsubscribed: "#57606a", failed: "#6e7781",
  };
  const kinds = Object.keys(chart.labels).filter(
    (kind) => chart.series[kind].some((n) => n > 0)
  );
  const data = [chart.series.t, ...kinds.map((kind) => chart.series[kind])];
  const series = [{}, ...kinds.map((kind) => ({
    label: chart.labels[kind], stroke: colours[kind] || "#333", width: 2,
    points: { show: chart.series.t.length < 60 },
  }))];
  const width = () => Math.max(300, holder.clientWidth || 600);
  const plot = new uPlot({
    width: width(), height: 300, series: series, tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
    axes: [{}, { label: "events per " + chart.bucket }],
  }, data, holder);
  window.addEventListener("resize", () => plot.setSize({ width: width(), height: 300 }));
})();
