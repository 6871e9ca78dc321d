"""The Responses API: object shapes, request reading, upstream modes and stored responses."""
