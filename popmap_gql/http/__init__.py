"""HTTP transport: the GraphQL endpoint, middleware, the response cache, the media routes."""
