// Small SVG charts of time series for the portal's pages, drawn by the portal's own code (no
// chart library, nothing from a CDN). lineChart and barChart draw into a container: a title,
// axes with labels (times in UTC), the series, and a text alternative: the SVG is one image
// whose aria-label sums the numbers up, and a visually hidden table lists every point.
// The arithmetic (scales, ticks, labels, the summary, the layout) is pure and exported, so it
// runs under node without a DOM.

const SVG_NS = "http://www.w3.org/2000/svg";

/** The drawing's size in SVG units; it scales to its container's width. */
export const SIZE = { width: 520, height: 200, top: 14, right: 16, bottom: 30, left: 58 };

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const TIME_STEPS = [
  SECOND, 2 * SECOND, 5 * SECOND, 10 * SECOND, 15 * SECOND, 30 * SECOND,
  MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE,
  HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY, 14 * DAY, 28 * DAY,
];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const NUMBER = new Intl.NumberFormat("en", { maximumSignificantDigits: 3 });
const COMPACT = new Intl.NumberFormat("en", { notation: "compact", maximumSignificantDigits: 3 });

// --- pure parts -------------------------------------------------------------------------------

/** The least "nice" step (1, 2, 2.5 or 5 times a power of ten) that is at least `rough`. */
export function niceStep(rough) {
  if (!(rough > 0) || !Number.isFinite(rough)) return 1;
  const power = 10 ** Math.floor(Math.log10(rough));
  const multiple = [1, 2, 2.5, 5, 10].find((m) => m * power >= rough * (1 - 1e-9));
  return multiple * power;
}

/** The ticks of a value axis: 0 up to a nice top that holds `max`, about `count` steps apart. */
export function valueTicks(max, count = 4) {
  const step = niceStep(max > 0 ? max / count : 1 / count);
  const steps = Math.max(1, Math.ceil(max / step - 1e-9));
  return Array.from({ length: steps + 1 }, (_, n) => Number((n * step).toPrecision(12)));
}

/** The ticks of a time axis from `start` to `end` (ms): multiples of the least step of
 * TIME_STEPS (or of whole 28 days) that makes at most `count` of them. */
export function timeTicks(start, end, count = 6) {
  const span = Math.max(end - start, SECOND);
  const step = TIME_STEPS.find((s) => span / s <= count) ?? 28 * DAY * Math.ceil(span / count / (28 * DAY));
  const ticks = [];
  for (let tick = Math.ceil(start / step) * step; tick <= end; tick += step) ticks.push(tick);
  return { step, ticks };
}

/** A linear map of the domain [d0, d1] onto the range [r0, r1] (a flat domain maps to r0). */
export function scale([d0, d1], [r0, r1]) {
  const ratio = d1 === d0 ? 0 : (r1 - r0) / (d1 - d0);
  return (value) => r0 + (value - d0) * ratio;
}

function pad(number) {
  return String(number).padStart(2, "0");
}

/** A date as "9 Mar" (UTC). */
export function dateLabel(ms) {
  const date = new Date(ms);
  return `${date.getUTCDate()} ${MONTHS[date.getUTCMonth()]}`;
}

/** A time on an axis whose ticks are `step` ms apart, in UTC: "14:05:30" under a minute,
 * "14:05" under a day (a midnight reads as its date), else "9 Mar". */
export function timeLabel(ms, step) {
  const date = new Date(ms);
  const clock = `${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}`;
  if (step < MINUTE) return `${clock}:${pad(date.getUTCSeconds())}`;
  if (step < DAY && ms % DAY !== 0) return clock;
  return dateLabel(ms);
}

/** A time as the summary and the table say it: "9 Mar 14:05 UTC" (seconds when there are). */
export function moment(ms) {
  const date = new Date(ms);
  const seconds = date.getUTCSeconds() ? `:${pad(date.getUTCSeconds())}` : "";
  return `${dateLabel(ms)} ${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}${seconds} UTC`;
}

/** A number as axes and summaries show it: "0", "0.25", "1,250", "12.3K". */
export function formatNumber(value) {
  if (!Number.isFinite(value)) return "–";
  return Math.abs(value) >= 10000 ? COMPACT.format(value) : NUMBER.format(value);
}

/** Whether any series has a point above zero. */
export function hasData(series) {
  return series.some(({ points }) => points.some(([, value]) => value > 0));
}

/** The words a screen reader hears for the chart: its title, its span, and for each series its
 * total (when given), its peak and its latest value. */
export function summary({ title, series, start, end, empty }) {
  const span = `from ${moment(start)} to ${moment(end)}`;
  if (!hasData(series)) return `${title}, ${span}: ${empty || "no data yet"}`;
  const parts = series.filter(({ points }) => points.length).map(({ label, points, total }) => {
    const [peakAt, peak] = points.reduce((best, point) => (point[1] > best[1] ? point : best));
    const latest = points[points.length - 1][1];
    const sum = total === undefined ? "" : `total ${total}, `;
    return `${label}: ${sum}peak ${formatNumber(peak)} at ${moment(peakAt)}, latest ${formatNumber(latest)}`;
  });
  return `${title}, ${span}. ${parts.join("; ")}.`;
}

const round = (value) => Math.round(value * 10) / 10;

/** Everything a chart draws, in SVG units: the axes' ticks with their labels and positions, and
 * for each series a line and area path (`bars: false`) or its bars (none when no point is
 * above zero). `barWidth`: the ms one bar spans from its point's time. */
export function layout({ series, start, end, bars = false, barWidth = 0 }, size = SIZE) {
  const plot = { x0: size.left, x1: size.width - size.right, y0: size.height - size.bottom, y1: size.top };
  const max = Math.max(0, ...series.flatMap(({ points }) => points.map(([, value]) => value)));
  const yTicks = max > 0 ? valueTicks(max) : [0]; // an empty chart: its baseline only
  const x = scale([start, end], [plot.x0, plot.x1]);
  const y = scale([0, yTicks[yTicks.length - 1] || 1], [plot.y0, plot.y1]);
  const { step, ticks } = timeTicks(start, end);
  const shape = (points) => (bars ? barsOf(points, x, y, barWidth, plot) : lineOf(points, x, y, plot));
  return {
    plot,
    yTicks: yTicks.map((value) => ({ value, y: round(y(value)), label: formatNumber(value) })),
    xTicks: ticks.map((ms) => ({ ms, x: round(x(ms)), label: timeLabel(ms, step) })),
    marks: max > 0 ? series.map(({ points }) => shape(points)) : [],
  };
}

function lineOf(points, x, y, plot) {
  const at = points.map(([ms, value]) => [round(x(ms)), round(y(value))]);
  if (!at.length) return { line: "", area: "", dots: [] };
  const line = at.map(([px, py], n) => `${n ? "L" : "M"}${px} ${py}`).join(" ");
  const area = `${line} L${at[at.length - 1][0]} ${plot.y0} L${at[0][0]} ${plot.y0} Z`;
  return { line, area, dots: at };
}

function barsOf(points, x, y, barWidth, plot) {
  const rects = points.map(([ms, value]) => {
    const left = x(ms);
    const width = Math.max(x(ms + barWidth) - left - 1, 0.5); // a 1-unit gap between bars
    const top = value > 0 ? Math.min(y(value), plot.y0 - 1) : plot.y0; // a sliver for a little
    return { x: round(left + 0.5), y: round(top), width: round(width), height: round(plot.y0 - top) };
  });
  return { rects };
}

// --- drawing ----------------------------------------------------------------------------------

/** Draws a line chart of `options` into `container`, replacing what was there:
 * {title, series: [{label, points: [[ms, value], ...], total?}], yLabel, start, end, empty?,
 * formatValue?}. `empty`: what to say when no point is above zero. */
export function lineChart(container, options) {
  return draw(container, { ...options, bars: false });
}

/** Draws a bar chart: as lineChart, each point a bar `barWidth` ms wide from its time. */
export function barChart(container, options) {
  return draw(container, { ...options, bars: true });
}

function svg(name, attributes = {}, text = "") {
  const element = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  if (text) element.textContent = text;
  return element;
}

function draw(container, options) {
  const figure = document.createElement("figure");
  figure.className = "chart";
  const caption = document.createElement("figcaption");
  caption.className = "chart-title";
  caption.textContent = options.title;
  const picture = svg("svg", {
    viewBox: `0 0 ${SIZE.width} ${SIZE.height}`,
    role: "img",
    "aria-label": summary(options),
    class: hasData(options.series) ? "chart-svg" : "chart-svg empty",
  });
  const shapes = layout(options);
  picture.append(...axes(shapes, options), ...marks(shapes, options));
  if (!hasData(options.series)) picture.append(emptyNote(shapes, options.empty));
  figure.append(caption, picture);
  if (options.series.length > 1) figure.append(legend(options.series));
  if (hasData(options.series)) figure.append(pointsTable(options));
  container.replaceChildren(figure);
  return figure;
}

function axes({ plot, yTicks, xTicks }, { yLabel }) {
  const grid = svg("g", { class: "chart-grid", "aria-hidden": "true" });
  const labels = svg("g", { class: "chart-axis", "aria-hidden": "true" });
  for (const tick of yTicks) {
    grid.append(svg("line", { x1: plot.x0, x2: plot.x1, y1: tick.y, y2: tick.y }));
    labels.append(svg("text", { x: plot.x0 - 6, y: tick.y, "text-anchor": "end", "dominant-baseline": "middle" }, tick.label));
  }
  for (const tick of xTicks) {
    labels.append(svg("line", { class: "chart-tick", x1: tick.x, x2: tick.x, y1: plot.y0, y2: plot.y0 + 4 }));
    labels.append(svg("text", { x: tick.x, y: plot.y0 + 16, "text-anchor": "middle" }, tick.label));
  }
  labels.append(svg("line", { class: "chart-baseline", x1: plot.x0, x2: plot.x1, y1: plot.y0, y2: plot.y0 }));
  if (yLabel) {
    const middle = (plot.y0 + plot.y1) / 2;
    labels.append(svg("text", { class: "chart-y-label", transform: `translate(12 ${middle}) rotate(-90)`, "text-anchor": "middle" }, yLabel));
  }
  return [grid, labels];
}

function marks({ marks: drawn }, { series, bars, barWidth, formatValue }) {
  const format = formatValue ?? formatNumber;
  return drawn.map((shape, index) => {
    const group = svg("g", { class: `chart-series chart-series-${index}` });
    const { label, points } = series[index];
    if (bars) {
      shape.rects.forEach((rect, n) => {
        const [ms, value] = points[n];
        const bar = svg("rect", rect);
        bar.append(svg("title", {}, `${moment(ms)} – ${moment(ms + barWidth)}: ${format(value)} ${label}`));
        group.append(bar);
      });
      return group;
    }
    if (!shape.line) return group;
    group.append(svg("path", { class: "chart-area", d: shape.area }), svg("path", { class: "chart-line", d: shape.line }));
    if (shape.dots.length <= 90) {
      shape.dots.forEach(([cx, cy], n) => {
        const dot = svg("circle", { cx, cy, r: 2.5 });
        dot.append(svg("title", {}, `${moment(points[n][0])}: ${format(points[n][1])} ${label}`));
        group.append(dot);
      });
    }
    return group;
  });
}

function emptyNote({ plot }, message) {
  const x = (plot.x0 + plot.x1) / 2;
  const y = (plot.y0 + plot.y1) / 2;
  return svg("text", { class: "chart-empty", x, y, "text-anchor": "middle", "dominant-baseline": "middle" }, message || "No data yet");
}

function legend(series) {
  const list = document.createElement("ul");
  list.className = "chart-legend";
  series.forEach(({ label }, index) => {
    const item = document.createElement("li");
    item.className = `chart-series-${index}`;
    item.textContent = label;
    list.append(item);
  });
  return list;
}

/** Every point in a table only screen readers see: time, then one column a series (the series
 * share the first one's times). A table is never shorter than its rows, so a box hides it. */
function pointsTable({ title, series, formatValue = formatNumber }) {
  const box = document.createElement("div");
  box.className = "visually-hidden";
  const table = document.createElement("table");
  box.append(table);
  table.createCaption().textContent = title;
  const head = table.createTHead().insertRow();
  for (const text of ["Time (UTC)", ...series.map(({ label }) => label)]) {
    const cell = document.createElement("th");
    cell.scope = "col";
    cell.textContent = text;
    head.append(cell);
  }
  const body = table.createTBody();
  series[0].points.forEach(([ms], n) => {
    const row = body.insertRow();
    row.insertCell().textContent = moment(ms);
    for (const { points } of series) row.insertCell().textContent = formatValue(points[n]?.[1] ?? 0);
  });
  return box;
}
