"""Live updates: GraphQL subscriptions over WebSocket, fanned out through PostgreSQL."""
