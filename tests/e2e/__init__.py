"""Browser tests: the real app on a local port, driven by Debian's Chromium through Playwright."""
