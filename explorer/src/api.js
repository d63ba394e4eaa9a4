// The GraphQL endpoint of the API that serves this page, called with the investigator's
// key (kept in sessionStorage: it lives as long as the tab, and no longer).

const KEY_ITEM = "riskgraph.apiKey";
const ENDPOINT = "/graphql";

export class AuthError extends Error {}

export class ApiError extends Error {
  constructor(message, codes) {
    super(message);
    this.codes = codes;
  }
}

export function storedKey() {
  return sessionStorage.getItem(KEY_ITEM);
}

export function storeKey(key) {
  sessionStorage.setItem(KEY_ITEM, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_ITEM);
}

// Runs one operation. Returns { data, errors }: errors on some fields leave the others
// usable (a limit engine that is down must not hide the graph). Throws AuthError when
// the key is refused and ApiError when nothing came back.
export async function graphql(query, variables = {}, key = storedKey()) {
  if (!key) throw new AuthError("no API key");
  let response;
  try {
    response = await fetch(ENDPOINT, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${key}` },
      body: JSON.stringify({ query, variables }),
    });
  } catch (err) {
    throw new ApiError(`cannot reach the API (${err.message})`, ["NETWORK"]);
  }
  if (response.status === 401) throw new AuthError("the API refused this key");
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError(`the API answered ${response.status} without JSON`, ["BAD_RESPONSE"]);
  }
  const errors = body.errors || [];
  if (body.data == null) {
    const first = errors[0] || { message: `HTTP ${response.status}` };
    throw new ApiError(first.message, errors.map(codeOf));
  }
  return { data: body.data, errors };
}

export function codeOf(error) {
  return (error.extensions && error.extensions.code) || "ERROR";
}

// The errors whose path starts with the given field names.
export function errorsAt(errors, ...path) {
  return errors.filter((e) => path.every((p, i) => e.path && e.path[i] === p));
}
