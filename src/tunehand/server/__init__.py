"""tunehand.server"""
