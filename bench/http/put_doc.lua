-- wrk script: PUT /doc/bench__doc with a 2 KB Markdown body (one document, overwritten).
wrk.method = "PUT"
wrk.path = "/doc/bench__doc"
wrk.headers["Content-Type"] = "text/markdown"
wrk.body = "# Bench document\n\n" .. string.rep("A line of Markdown text for the benchmark.\n", 46)
