// The portal's own JSON endpoints, as the portal's pages read them: signed in (the session
// cookie), never from a cache. An answer that is not JSON from the endpoint throws an Error
// whose message a page can show ("signed out: reload the page", "the server answered 500").

export async function portalJSON(url) {
  const response = await fetch(url, {
    headers: { Accept: "application/json" },
    credentials: "same-origin",
    cache: "no-store",
  });
  // A session that ended is redirected to the sign-in page, which is no JSON.
  if (response.redirected) throw new Error("signed out: reload the page");
  if (!response.ok) throw new Error(`the server answered ${response.status}`);
  return response.json();
}
