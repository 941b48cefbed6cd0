"""Popmap's GraphQL API: pop-up events, the local businesses taking part, Cognito sign-in."""
