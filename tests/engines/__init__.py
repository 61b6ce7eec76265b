"""Real-engine tests (vllm, openai, modal) on vLLM's CPU backend."""
