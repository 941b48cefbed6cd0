"""Logos and event images: signed browser uploads, the two stores, and checks on the bytes.

Nothing here imports Starlette or Strawberry except `routes`, the embedded store's HTTP side.
"""
