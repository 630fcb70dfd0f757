/**
 * @module The error of a bad command line (the tools print its message as one line, exit 2).
 */

/** A bad command line, explained in one line. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}
