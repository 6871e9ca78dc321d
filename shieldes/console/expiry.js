// A key's expiry in the create and Edit forms: a date and time in the user's own time zone (what a
// datetime-local input shows), sent as the UTC instant the admin API takes in `expires_at`.
import { h, field, fmt } from "./core.js";

// the admin API refuses an expiry after the year 9999
const LATEST = "9999-12-31T23:59";

// "2027-01-01T09:30" in the browser's time zone for an ISO instant (null: ""), as the input shows it
export function localInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const two = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())}T${two(d.getHours())}:${two(d.getMinutes())}`;
}

// the browser's zone as the hint names it: "Europe/Berlin, UTC+01:00"
export function zoneName(at = new Date()) {
  const off = -at.getTimezoneOffset();
  const abs = Math.abs(off);
  const utc = `UTC${off < 0 ? "-" : "+"}${String(Math.floor(abs / 60)).padStart(2, "0")}:${String(abs % 60).padStart(2, "0")}`;
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  return zone && zone !== "UTC" ? `${zone}, ${utc}` : utc;
}

// The instant a local date and time stands for, as the rest of the console writes times (UTC): the
// key list shows expiries that way, so the form says which of its lines the key will show
export function utcEcho(text) {
  if (!text) return "";
  const at = new Date(text);
  if (Number.isNaN(at.getTime())) return "";
  return `= ${fmt.time(at.toISOString())} in UTC, as the key list shows it`;
}

// A UTC instant in the user's own time and zone, for a tooltip beside the console's UTC times
export function localTitle(iso) {
  return `your local time: ${localInput(iso).replace("T", " ")} (${zoneName(new Date(iso))})`;
}

// What the input holds, decided: { value } with the ISO instant to send (null: never expires), or
// { error } in plain words saying what to do. `text` is the input's value, `bad` whether the
// browser holds a date it could not read (a field of it left empty), `now` the time in ms.
export function readExpiry(text, bad, now) {
  if (bad) {
    return { error: "The expiry is not a complete date and time: fill in the day, month, year, hour and minute, "
      + "or clear it for a key that never expires." };
  }
  if (!text) return { value: null };
  const at = new Date(text);  // (a date and time without a zone is the browser's local time)
  if (Number.isNaN(at.getTime())) return { error: `The expiry \u201c${text}\u201d is not a date and time: pick one in the field.` };
  if (at.getFullYear() > 9999) return { error: "The expiry is after the year 9999: pick a nearer date." };
  if (at.getTime() <= now) {
    return { error: "The expiry is in the past: pick a later date and time, or clear it for a key that never expires." };
  }
  return { value: at.toISOString() };
}

// The Expires field of a key's form. `current` is the key's expires_at when editing: left as it is,
// it is not sent (an expired key's other fields save without moving its expiry). `changed()` says
// whether the user set, changed or cleared it; `read()` is readExpiry's answer for it. `error` is
// the form's error line: a date half typed stops the submit in the browser (before the form's
// handler runs), so the form says what is missing there as well as the browser's own bubble.
export function expiryPicker(current, error) {
  const shown = localInput(current);
  const input = h("input", { name: "expires_at", type: "datetime-local", value: shown, max: LATEST });
  const clear = h("button.clear-expiry", { type: "button", onclick: () => { input.value = ""; input.focus(); } },
    "Never expires");
  const box = field("Expires", input, `your local time (${zoneName()}); empty: never expires`);
  const echo = h("output.utc-echo", { for: input.id, "aria-live": "polite" }, utcEcho(shown));
  const showEcho = () => { echo.textContent = utcEcho(input.value); };
  input.addEventListener("input", showEcho);
  input.addEventListener("change", showEcho);
  clear.addEventListener("click", showEcho);
  box.append(clear, echo);
  const read = () => readExpiry(input.value, input.validity.badInput, Date.now());
  input.addEventListener("invalid", () => { error.textContent = read().error || ""; });
  return {
    fields: [box],
    input,
    changed: () => input.value !== shown || input.validity.badInput,
    read,
    // after the form's reset() (which fires no input event) the line under the field follows it
    refresh: showEcho,
  };
}
