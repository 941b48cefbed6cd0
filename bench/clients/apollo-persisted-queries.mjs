// Apollo Client's own persisted-query link against a running Popmap server: each
// query's hash first, its text only when the server does not know the hash, over POST
// and over GET. Prints what each round got and every request with its status.
//
//   npm install --prefix /tmp/apollo-check @apollo/client@4 graphql rxjs
//   cp bench/clients/apollo-persisted-queries.mjs /tmp/apollo-check/
//   node /tmp/apollo-check/apollo-persisted-queries.mjs http://127.0.0.1:8000/graphql
// (bench/README.md has a run's output.)
import { ApolloClient, InMemoryCache, HttpLink, gql } from "@apollo/client";
import { PersistedQueryLink } from "@apollo/client/link/persisted-queries";
import { createHash } from "node:crypto";

const ENDPOINT = process.argv[2] ?? "http://127.0.0.1:8000/graphql";

const sha256 = (text) => createHash("sha256").update(text).digest("hex");
const requests = [];
const logged = async (url, init) => {
  requests.push(`${init?.method ?? "GET"} ${String(url).slice(0, 90)}`);
  const response = await fetch(url, init);
  requests.push(`  -> ${response.status}`);
  return response;
};
const QUERY = gql`query ApolloCategories { categories { id name } }`;
const FRESH = gql`query ApolloFresh { categories { slug } }`;

for (const useGETForHashedQueries of [false, true]) {
  const link = new PersistedQueryLink({ sha256, useGETForHashedQueries }).concat(
    new HttpLink({ uri: ENDPOINT, fetch: logged })
  );
  for (const round of [1, 2]) {
    const client = new ApolloClient({ link, cache: new InMemoryCache() });
    const result = await client.query({ query: QUERY, fetchPolicy: "network-only" });
    console.log(`GET=${useGETForHashedQueries} round ${round}: ${result.data.categories.length} categories, error=${result.error ?? "none"}`);
  }
}
console.log(requests.join("\n"));
requests.length = 0;
{
  const link = new PersistedQueryLink({ sha256, useGETForHashedQueries: true }).concat(
    new HttpLink({ uri: ENDPOINT, fetch: logged })
  );
  for (const round of [1, 2]) {
    const client = new ApolloClient({ link, cache: new InMemoryCache() });
    const result = await client.query({ query: FRESH, fetchPolicy: "network-only" });
    console.log(`fresh GET round ${round}: ${result.data.categories.length} categories`);
  }
  console.log(requests.join("\n"));
}
