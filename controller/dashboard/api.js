/* The controller's API: every call carries the user's bearer token and the page's
 * language; a 401 signs the user out; an error answer becomes an HttpError. */

import {S, screen} from "./state.js";

export class HttpError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
    this.detail = detail;
  }
}

const signedOut = [];
/* Call fn when the user signs out (or the token is refused). */
export function onSignOut(fn) { signedOut.push(fn); }

export function signOut() {
  signedOut.forEach((fn) => fn());
  sessionStorage.removeItem("sc.token");
  S.token = null;
  S.me = null;
  location.hash = "#/";
  screen.render();
}

export async function api(path, opts) {
  opts = opts || {};
  const headers = {Authorization: "Bearer " + S.token, "Accept-Language": S.lang,
    ...(opts.headers || {})};
  if (opts.json !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch("/api/v1" + path, {method: opts.method || "GET", headers,
    body: opts.json !== undefined ? JSON.stringify(opts.json) : undefined});
  if (r.status === 401 && !opts.quiet401) {
    signOut();
    throw new HttpError(401, "unauthorized");
  }
  if (!r.ok) {
    let detail = r.statusText;
    try { detail = (await r.json()).detail; } catch (e) { /* not JSON */ }
    throw new HttpError(r.status, detail);
  }
  return opts.raw ? r : r.json();
}
