-- GET with "Authorization: Bearer T", T cycling through the access tokens
-- of a file ("access refresh" per line). Arguments after "--":
-- FILE [COUNT]: the first COUNT tokens (all by default). Paths alternate
-- between the URL's path and, when set, the path in the environment
-- variable BENCH_PATH2.
-- Every request is formatted once, in init(): request() only hands out
-- the next one, so that the load generator spends on each request what it
-- spends on a fixed one and the ratio against /healthz (plain wrk) is the
-- server's.
local reqs, i, n = {}, 0, 0

function init(args)
    local limit = tonumber(args[2] or "0") or 0
    local path2 = os.getenv("BENCH_PATH2")
    local tokens = {}
    for line in io.lines(args[1]) do
        local t = line:match("^(%S+)")
        if t and (limit == 0 or #tokens < limit) then
            tokens[#tokens + 1] = t
        end
    end
    for k, t in ipairs(tokens) do
        local h = { Authorization = "Bearer " .. t }
        reqs[#reqs + 1] = wrk.format("GET", wrk.path, h)
        if path2 then
            reqs[#reqs + 1] = wrk.format("GET", path2, h)
        end
    end
    n = #reqs
    i = math.random(n) - 1
end

function request()
    i = i % n + 1
    return reqs[i]
end
