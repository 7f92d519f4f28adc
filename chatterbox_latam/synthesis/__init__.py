"""Speech from text: `ChatterboxLatamTTS` (`tts`), the fast T3 loop (`decoding`) at a chosen precision
(`precision`; the CPU-speed layers and the llama.cpp engine in `cpu_fast`, with its own extra), S3Gen and the
watermark (`vocoder`), audio while T3 decodes (`streaming`), files of texts (`batch_generate`) and the web service
behind the Space (`serving`)."""
