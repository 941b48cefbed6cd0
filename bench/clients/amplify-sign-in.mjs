// The real aws-amplify v6 signing in against the local identity provider, in Chromium:
// signInWithRedirect -> the local sign-in page -> back to the app -> fetchAuthSession
// gives tokens the API accepts (`me`) -> fetchAuthSession({ forceRefresh: true }) through
// the user-pool API -> signOut revokes the refresh token. Prints each step.
//
//   apt-get install -y chromium
//   npm install --prefix /tmp/amplify-check aws-amplify@6 esbuild playwright-core
//   cp bench/clients/amplify-app.js bench/clients/amplify-sign-in.mjs /tmp/amplify-check/
//   APP=5199; AWS_COGNITO_REDIRECT_SIGN_IN=http://localhost:$APP/callback \
//     AWS_COGNITO_REDIRECT_SIGN_OUT=http://localhost:$APP/ \
//     CORS_ALLOWED_ORIGINS=http://localhost:$APP .venv/bin/popmap-gql serve --demo --https --port 8443 &
//   NODE_EXTRA_CA_CERTS=.popmap/tls/ca.pem \
//     node /tmp/amplify-check/amplify-sign-in.mjs https://127.0.0.1:8443/graphql $APP
// (Chromium is told to ignore certificate errors; Node, which checks the revocation at the
// end, trusts the data folder's authority.)
// (bench/README.md has a run's output.)
import { build } from "esbuild";
import { createServer } from "node:http";
import { chromium } from "playwright-core";

const API = process.argv[2] ?? "https://127.0.0.1:8443/graphql";
const APP_PORT = Number(process.argv[3] ?? 5199);
const here = new URL(".", import.meta.url).pathname;

const bundle = await build({
  entryPoints: [`${here}amplify-app.js`],
  bundle: true,
  format: "esm",
  write: false,
  target: "es2022",
  logLevel: "warning",
});
const script = bundle.outputFiles[0].text;
const page = `<!doctype html><html><body><p id="status">app</p>
<script>window.POPMAP_API = ${JSON.stringify(API)};</script>
<script type="module" src="/app.js"></script></body></html>`;
// The app: every path is the page (the callback too), /app.js the bundle.
const app = createServer((request, response) => {
  const js = request.url === "/app.js";
  response.writeHead(200, { "content-type": js ? "text/javascript" : "text/html" });
  response.end(js ? script : page);
}).listen(APP_PORT, "127.0.0.1");

const step = (name, detail = "") => console.log(`ok  ${name}${detail ? `: ${detail}` : ""}`);
const claims = (token) => JSON.parse(Buffer.from(token.split(".")[1], "base64url"));
const userPool = async (operation, body) => {
  const endpoint = new URL("/", API).toString();
  const response = await fetch(endpoint, {
    method: "POST",
    headers: {
      "content-type": "application/x-amz-json-1.1",
      "x-amz-target": `AWSCognitoIdentityProviderService.${operation}`,
    },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
try {
  // The certificate is the data folder's own; a developer's browser trusts its ca.pem.
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const tab = await context.newPage();
  const failures = [];
  tab.on("pageerror", (error) => failures.push(String(error)));
  await tab.goto(`http://localhost:${APP_PORT}/`);
  await tab.waitForFunction(() => window.popmapReady === true);
  const config = await tab.evaluate(() => window.popmap.config);
  step("Amplify.configure from authConfig", `domain ${config.domain}, userPoolEndpoint ${config.userPoolEndpoint}`);

  await tab.evaluate(() => window.popmap.signIn());
  await tab.waitForURL(/\/login\?/);
  step("signInWithRedirect", new URL(tab.url()).origin + new URL(tab.url()).pathname);
  await tab.fill("#email", "amplify@example.com");
  await tab.check('input[name="staff"]');
  await tab.click('button[type="submit"]');
  await tab.waitForURL(new RegExp(`^http://localhost:${APP_PORT}/`));
  await tab.waitForFunction(() => window.popmapReady === true);
  step("back at the app", new URL(tab.url()).pathname);

  let tokens = { access: null };
  for (let attempt = 0; attempt < 50 && !tokens.access; attempt++) {
    tokens = await tab.evaluate(() => window.popmap.tokens(false));
    if (!tokens.access) await tab.waitForTimeout(100);
  }
  if (!tokens.access) throw new Error(`no tokens after the redirect: ${failures.join("; ")}`);
  const me = await tab.evaluate((token) => window.popmap.me(token), tokens.id);
  step("fetchAuthSession", `me = ${JSON.stringify(me)}`);

  const refreshed = await tab.evaluate(() => window.popmap.tokens(true));
  const sameSignIn = claims(refreshed.access).origin_jti === claims(tokens.access).origin_jti;
  const newToken = claims(refreshed.access).jti !== claims(tokens.access).jti;
  const meAgain = await tab.evaluate((token) => window.popmap.me(token), refreshed.access);
  if (!sameSignIn || !newToken || meAgain.id !== me.id) throw new Error("refresh went wrong");
  step("fetchAuthSession({ forceRefresh: true })", "a new access token of the same sign-in; me answers the same person");

  const refreshToken = await tab.evaluate(() =>
    Object.entries(localStorage).find(([key]) => key.endsWith(".refreshToken"))?.[1]);
  await tab.evaluate(() => window.popmap.signOut());
  await tab.waitForURL(new RegExp(`^http://localhost:${APP_PORT}/`));
  const after = await userPool("GetTokensFromRefreshToken", {
    ClientId: config.userPoolClientId,
    RefreshToken: refreshToken,
  });
  if (after.status !== 400) throw new Error(`refresh after signOut: ${JSON.stringify(after)}`);
  step("signOut", `back at ${tab.url()}; the refresh token now gets ${after.body.__type}: ${after.body.message}`);
  if (failures.length) throw new Error(`page errors: ${failures.join("; ")}`);
} finally {
  await browser.close();
  app.close();
}
