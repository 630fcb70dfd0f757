/**
 * @module SVG charts of a backtest report: the equity curve (cumulative pnl after each trade,
 * paper and filled) over its drawdown, and the model's reliability diagram. Plain strings, no
 * dependencies, deterministic (coordinates rounded to 0.1 px).
 */
import { fixed } from "../strategy/paper_log.ts";
import { equityCurve, type TradeOutcome } from "./metrics.ts";
import type { BacktestReport, TradeRow } from "./report.ts";

const WIDTH = 900;
const PAD = { left: 80, right: 20, top: 30, bottom: 30 };

function c(x: number): string {
  return fixed(x, 1);
}

function escape(s: string): string {
  return s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

interface Series {
  name: string;
  color: string;
  points: { x: number; y: number }[];
}

/** A line panel at vertical offset `top`, `height` tall. */
function panel(
  title: string,
  series: Series[],
  x0: number,
  x1: number,
  top: number,
  height: number,
): string {
  const ys = series.flatMap((s) => s.points.map((p) => p.y));
  let lo = Math.min(0, ...ys);
  let hi = Math.max(0, ...ys);
  if (hi === lo) hi = lo + 1;
  const pad = (hi - lo) * 0.05;
  lo -= pad;
  hi += pad;
  const plotW = WIDTH - PAD.left - PAD.right;
  const sx = (x: number) => PAD.left + (x1 === x0 ? 0 : ((x - x0) / (x1 - x0)) * plotW);
  const sy = (y: number) => top + height - ((y - lo) / (hi - lo)) * height;
  const out = [
    `<text x="${PAD.left}" y="${c(top - 8)}" font-size="13">${escape(title)}</text>`,
    `<rect x="${PAD.left}" y="${
      c(top)
    }" width="${plotW}" height="${height}" fill="none" stroke="#999"/>`,
    `<line x1="${PAD.left}" x2="${WIDTH - PAD.right}" y1="${c(sy(0))}" y2="${
      c(sy(0))
    }" stroke="#ccc"/>`,
    `<text x="${PAD.left - 6}" y="${c(top + 10)}" font-size="11" text-anchor="end">${
      fixed(hi, 0)
    }</text>`,
    `<text x="${PAD.left - 6}" y="${c(top + height)}" font-size="11" text-anchor="end">${
      fixed(lo, 0)
    }</text>`,
  ];
  series.forEach((s, i) => {
    // A step line: equity changes only when a trade closes.
    let d = `M${c(sx(x0))},${c(sy(0))}`;
    for (const p of s.points) d += ` H${c(sx(p.x))} V${c(sy(p.y))}`;
    d += ` H${c(sx(x1))}`;
    out.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.5"/>`);
    out.push(
      `<text x="${WIDTH - PAD.right - 4}" y="${
        c(top + 14 + i * 14)
      }" font-size="11" text-anchor="end" fill="${s.color}">${escape(s.name)}</text>`,
    );
  });
  return out.join("\n");
}

function outcomes(trades: readonly TradeRow[], filled: boolean): TradeOutcome[] {
  const out: TradeOutcome[] = [];
  for (const t of trades) {
    if (filled && (t.fillPnl === null || t.fillExitTs === null)) continue;
    out.push({
      market: t.market,
      entryTs: Date.parse(t.entryTs),
      exitTs: Date.parse(filled ? t.fillExitTs! : t.exitTs),
      pnl: filled ? t.fillPnl! : t.paperPnl,
      notional: 0,
      fees: 0,
    });
  }
  return out;
}

/**
 * The equity curve (top) and drawdown (bottom) of every trade of the report, paper and filled.
 *
 * @example
 * ```ts ignore
 * await Deno.writeTextFile("run.svg", equityChartSvg(report));
 * ```
 */
export function equityChartSvg(report: BacktestReport): string {
  const x0 = Date.parse(report.run.from);
  const x1 = Date.parse(report.run.to);
  const paper = equityCurve(outcomes(report.trades, false));
  const filled = equityCurve(outcomes(report.trades, true));
  const height = 560;
  const body = [
    panel(
      `Equity (KRW, cumulative pnl) ${report.run.markets.join(",")}`,
      [
        { name: "paper", color: "#1f77b4", points: paper.map((p) => ({ x: p.ts, y: p.equity })) },
        { name: "filled", color: "#d62728", points: filled.map((p) => ({ x: p.ts, y: p.equity })) },
      ],
      x0,
      x1,
      PAD.top,
      300,
    ),
    panel(
      "Drawdown (KRW)",
      [
        {
          name: "paper",
          color: "#1f77b4",
          points: paper.map((p) => ({ x: p.ts, y: -p.drawdown })),
        },
        {
          name: "filled",
          color: "#d62728",
          points: filled.map((p) => ({ x: p.ts, y: -p.drawdown })),
        },
      ],
      x0,
      x1,
      PAD.top + 300 + 50,
      150,
    ),
    `<text x="${PAD.left}" y="${height - 8}" font-size="11">${escape(report.run.from)}</text>`,
    `<text x="${WIDTH - PAD.right}" y="${height - 8}" font-size="11" text-anchor="end">${
      escape(report.run.to)
    }</text>`,
  ];
  return svg(height, body.join("\n"));
}

/** Predicted probability (x) vs observed frequency (y) per bin, one series per class. */
export function reliabilityChartSvg(report: BacktestReport): string {
  const size = 400;
  const left = 60;
  const top = 40;
  const sx = (p: number) => left + p * size;
  const sy = (p: number) => top + size - p * size;
  const colors = { up: "#2ca02c", down: "#d62728", flat: "#7f7f7f" } as const;
  const q = report.total.quality;
  const body = [
    `<text x="${left}" y="24" font-size="13">Reliability (${q.scored} predictions scored)</text>`,
    `<rect x="${left}" y="${top}" width="${size}" height="${size}" fill="none" stroke="#999"/>`,
    `<line x1="${sx(0)}" y1="${sy(0)}" x2="${sx(1)}" y2="${
      sy(1)
    }" stroke="#ccc" stroke-dasharray="4"/>`,
    `<text x="${left + size / 2}" y="${
      top + size + 30
    }" font-size="11" text-anchor="middle">predicted</text>`,
    `<text x="${left - 30}" y="${
      top + size / 2
    }" font-size="11" text-anchor="middle">observed</text>`,
  ];
  (["up", "down", "flat"] as const).forEach((k, i) => {
    const pts = q.reliability[k].filter((b) => b.n > 0);
    if (pts.length > 0) {
      const d = pts.map((b, j) =>
        `${j === 0 ? "M" : "L"}${c(sx(b.predicted!))},${c(sy(b.observed!))}`
      )
        .join(" ");
      body.push(`<path d="${d}" fill="none" stroke="${colors[k]}" stroke-width="1.5"/>`);
      for (const b of pts) {
        body.push(
          `<circle cx="${c(sx(b.predicted!))}" cy="${c(sy(b.observed!))}" r="3" fill="${
            colors[k]
          }"><title>${k} n=${b.n}</title></circle>`,
        );
      }
    }
    body.push(
      `<text x="${left + size + 10}" y="${top + 14 + i * 14}" font-size="11" fill="${
        colors[k]
      }">p_${k}</text>`,
    );
  });
  return svg(top + size + 50, body.join("\n"), left + size + 80);
}

function svg(height: number, body: string, width = WIDTH): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}" font-family="sans-serif">\n` +
    `<rect width="100%" height="100%" fill="white"/>\n${body}\n</svg>\n`;
}
