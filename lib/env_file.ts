/**
 * @module Parser for `.env` files: `KEY=value` lines, `#` comments, optional `export `,
 * single or double quotes (double quotes understand `\n`, `\"` and `\\`); a quoted value ends at
 * its closing quote, which only blanks and a `#` comment may follow.
 */

const LINE = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$/;

/**
 * Parses the text of a `.env` file into a map of variables.
 *
 * @throws {Error} naming the line number of a line that is neither blank, a comment nor `KEY=value`,
 *   or (with its key) of a quoted value without its closing quote or with text after it (the
 *   line itself is not echoed: it may hold a secret).
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
    const value = m[2] ?? "";
    out[key] = value.startsWith('"') || value.startsWith("'")
      ? quoted(value, `.env line ${i + 1} (${key})`)
      : value.replace(/\s+#.*$/, "");
  }
  return out;
}

/**
 * The value of a quoted `raw` (starting with its quote): up to the closing quote, which may be
 * followed by blanks and a `#` comment only. In double quotes `\n`, `\"` and `\\` are escapes.
 *
 * @throws {Error} `<where>: …` for an unterminated quote or text after the closing one (the value
 *   is not echoed: it may be a secret).
 */
function quoted(raw: string, where: string): string {
  const quote = raw[0]!;
  let value = "";
  for (let i = 1; i < raw.length; i++) {
    const c = raw[i]!;
    if (c === quote) {
      if (!/^\s*(#.*)?$/.test(raw.slice(i + 1))) {
        throw new Error(
          `${where}: text after the value's closing ${quote} (only a # comment may follow it)`,
        );
      }
      return value;
    }
    if (quote === '"' && c === "\\" && /[n"\\]/.test(raw[i + 1] ?? "")) {
      value += raw[i + 1] === "n" ? "\n" : raw[i + 1];
      i++;
    } else {
      value += c;
    }
  }
  throw new Error(`${where}: the value's opening ${quote} is never closed`);
}
