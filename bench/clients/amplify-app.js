// The browser side of amplify-sign-in.mjs: a page using the real aws-amplify v6, configured
// from the API's authConfig exactly as docs/clients.md shows, bundled by esbuild.
import { Amplify } from "aws-amplify";
import { fetchAuthSession, signInWithRedirect, signOut } from "aws-amplify/auth";

const API = window.POPMAP_API; // set by the page amplify-sign-in.mjs serves

const post = async (query, token) =>
  (await fetch(API, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: JSON.stringify({ query }),
  })).json();

const { data } = await post(`{ authConfig { userPoolId userPoolClientId userPoolEndpoint
  domain scopes redirectSignIn redirectSignOut responseType } }`);
const c = data.authConfig;
Amplify.configure({
  Auth: { Cognito: {
    userPoolId: c.userPoolId,
    userPoolClientId: c.userPoolClientId,
    userPoolEndpoint: c.userPoolEndpoint ?? undefined,
    loginWith: { oauth: {
      domain: c.domain,
      scopes: c.scopes,
      redirectSignIn: c.redirectSignIn,
      redirectSignOut: c.redirectSignOut,
      responseType: c.responseType,
    } },
  } },
});

const tokens = async (forceRefresh) => {
  const session = await fetchAuthSession({ forceRefresh });
  return {
    access: session.tokens?.accessToken?.toString() ?? null,
    id: session.tokens?.idToken?.toString() ?? null,
  };
};

window.popmap = {
  config: c,
  signIn: () => signInWithRedirect(),
  tokens,
  me: async (token) => (await post("{ me { id email groups isStaff } }", token)).data.me,
  signOut: () => signOut(),
};
window.popmapReady = true;
