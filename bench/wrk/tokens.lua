-- GET with "Authorization: Bearer T", T cycling through the access tokens
-- of a file ("access refresh" per line). Arguments after "--":
-- FILE [COUNT]: the first COUNT tokens (all by default). Paths alternate
-- between the URL's path and, when set, the path in the environment
-- variable BENCH_PATH2.
local tokens, i, n = {}, 0, 0
local path2 = os.getenv("BENCH_PATH2")
local flip = false

function init(args)
    local limit = tonumber(args[2] or "0") or 0
    for line in io.lines(args[1]) do
        local t = line:match("^(%S+)")
        if t and (limit == 0 or #tokens < limit) then
            tokens[#tokens + 1] = t
        end
    end
    n = #tokens
    i = math.random(n) - 1
end

function request()
    i = i % n + 1
    local path = wrk.path
    if path2 then
        flip = not flip
        if flip then path = path2 end
    end
    return wrk.format("GET", path, { Authorization = "Bearer " .. tokens[i] })
end
