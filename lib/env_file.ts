/**
 * @module Parser for `.env` files: `KEY=value` lines, `#` comments, optional `export `,
 * single or double quotes (double quotes understand `\n`, `\"` and `\\`).
 */

const LINE = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$/;

/**
 * Parses the text of a `.env` file into a map of variables.
 *
 * @throws {Error} naming the line number of a line that is neither blank, a comment nor `KEY=value`
 *   (the line itself is not echoed: it may hold a secret).
 * @example
 * ```ts
 * parseEnvFile("A=1\n# note\nB='two words'"); // { A: "1", B: "two words" }
 * ```
 */
export function parseEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? "";
    if (/^\s*(#.*)?$/.test(line)) continue;
    const m = LINE.exec(line);
    if (!m) throw new Error(`.env line ${i + 1} is not KEY=value`);
    const key = m[1] as string;
    let value = m[2] ?? "";
    if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) {
      value = value.slice(1, -1).replace(/\\([n"\\])/g, (_, c) => (c === "n" ? "\n" : c));
    } else if (value.startsWith("'") && value.endsWith("'") && value.length >= 2) {
      value = value.slice(1, -1);
    } else {
      value = value.replace(/\s+#.*$/, "");
    }
    out[key] = value;
  }
  return out;
}
