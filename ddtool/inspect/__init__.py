"""Showing results: terminal image grids and PNG export."""
