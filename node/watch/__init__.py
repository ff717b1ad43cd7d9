"""The watch stream: the WebSocket route, its frames, the replicated watcher counts (announcer),
forwarding between nodes, and delivery to watchers."""
