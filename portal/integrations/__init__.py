"""The outside world behind small interfaces: messages now; payments, PDFs and signing later."""
