-- POST a fixed JSON submit body (the API key comes with -H).
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
done = dofile(here .. "report.lua").done

wrk.method = "POST"
wrk.body = '{"model":"testcard-video","prompt":"bench"}'
wrk.headers["Content-Type"] = "application/json"
