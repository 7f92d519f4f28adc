"""Speech from text: `ChatterboxLatamTTS` (`tts`), the fast T3 loop (`decoding`) at a chosen precision
(`precision`), S3Gen and the watermark (`vocoder`), audio while T3 decodes (`streaming`), files of texts
(`batch_generate`) and the web service behind the Space (`serving`)."""
