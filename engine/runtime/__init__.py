"""The runtime: deciding and executing methods on items, explaining refusals, the item
operations, SLA detection and the read side."""
