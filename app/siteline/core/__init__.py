"""Siteline's core: pure Python + asyncio. Nothing under this package may import Qt."""
