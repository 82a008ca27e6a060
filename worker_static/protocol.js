/*
 * The protocol for the browser side: the numbers and message names of docs/protocol.md, and
 * the credit arithmetic (exact decimals with CREDIT_DECIMALS places, counted in BigInt units).
 *
 *   import { PROTOCOL_VERSION, WORKER_SENDS, addCredits } from "/worker/protocol.js";
 *
 * The constants come from protocol-constants.js, which is generated from the Python protocol
 * package (dcp/protocol/) and checked against it by tests/worker_js/test_protocol_js.py.
 */

import { CREDIT_DECIMALS, UNITS_PER_CREDIT } from "./protocol-constants.js";

export * from "./protocol-constants.js";

const CREDIT_AMOUNT = /^\s*([+-]?)(\d*)(?:\.(\d*))?\s*$/;

/** Parses a decimal credit amount ("0.004") into base units of 10⁻⁹ credit (a BigInt). */
export function parseCredits(amount) {
  const match = CREDIT_AMOUNT.exec(String(amount ?? ""));
  if (!match || (match[2] === "" && !match[3])) throw new RangeError(`not a credit amount: ${amount}`);
  const [, sign, whole, fraction = ""] = match;
  if (fraction.replace(/0+$/, "").length > CREDIT_DECIMALS) {
    throw new RangeError(`a credit amount has at most ${CREDIT_DECIMALS} decimals: ${amount}`);
  }
  const units = BigInt(whole || "0") * UNITS_PER_CREDIT
    + BigInt(fraction.slice(0, CREDIT_DECIMALS).padEnd(CREDIT_DECIMALS, "0"));
  return sign === "-" ? -units : units;
}

/** Formats base units as a decimal string without trailing zeros ("0.05", "3"). */
export function formatCredits(units) {
  const negative = units < 0n;
  const magnitude = negative ? -units : units;
  const fraction = (magnitude % UNITS_PER_CREDIT).toString().padStart(CREDIT_DECIMALS, "0").replace(/0+$/, "");
  return `${negative ? "-" : ""}${magnitude / UNITS_PER_CREDIT}${fraction ? `.${fraction}` : ""}`;
}

/** Exact sum of decimal credit amounts, as a decimal string. */
export function addCredits(...amounts) {
  return formatCredits(amounts.reduce((sum, amount) => sum + parseCredits(amount), 0n));
}
