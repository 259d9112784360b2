"""UltraChat: a self-hostable real-time chat platform."""
