// A tiny leveled logger with loglevel's numbering (TRACE=0 … SILENT=5), so setLogLevel("INFO")
// behaves as in WebLLM without shipping the `loglevel` dependency. Default WARN, as WebLLM.

export const LOG_LEVELS = { TRACE: 0, DEBUG: 1, INFO: 2, WARN: 3, ERROR: 4, SILENT: 5 };
let current = LOG_LEVELS.WARN;

export function setLogLevel(level) {
  const v = typeof level === "number" ? level : LOG_LEVELS[String(level).toUpperCase()];
  if (v === undefined) throw new Error(`Unknown log level: ${level}`);
  current = v;
}

const at = (lvl, fn) => (...args) => { if (current <= lvl) fn("[mlc-wgpu]", ...args); };
export const log = {
  trace: at(LOG_LEVELS.TRACE, console.debug),
  debug: at(LOG_LEVELS.DEBUG, console.debug),
  info: at(LOG_LEVELS.INFO, console.info),
  warn: at(LOG_LEVELS.WARN, console.warn),
  error: at(LOG_LEVELS.ERROR, console.error),
};
