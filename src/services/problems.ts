// A problem with one object: which object, which field, which value, why.
// Bad input never throws out of the compilers; it becomes a Problem that the
// agent logs once, counts in a metric and reports in status.

export interface Problem {
  /** e.g. 'Service default/web' or 'EndpointSlice default/web-abc12' */
  object: string;
  /** JSON-path-like field, e.g. 'spec.ports[1].port' */
  field: string;
  value: unknown;
  message: string;
}

export function problem(object: string, field: string, value: unknown, why: string): Problem {
  return { object, field, value, message: `${object}: ${field}: ${formatValue(value)} ${why}` };
}

/** A problem's value as its message shows it. */
export function formatValue(value: unknown): string {
  if (value === undefined) return '(missing)';
  const s = JSON.stringify(value);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/** Thrown where one bad field makes a whole object unusable. */
export class ValidationError extends Error {
  readonly code = 'EINVALID';
  readonly problems: Problem[];
  constructor(problems: Problem[]) {
    super(problems.map((p) => p.message).join('; '));
    this.name = 'ValidationError';
    this.problems = problems;
  }
}

export function isValidationError(err: unknown): err is ValidationError {
  return err instanceof ValidationError;
}
