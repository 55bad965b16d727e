-- POST /api/v1/auth/refresh, each request with the refresh token the
-- previous answer gave (a chain per thread: run with as many connections
-- as threads). Arguments after "--": FILE of "access refresh" lines; thread
-- k takes line k.
local threads, tok = {}, nil

function setup(thread)
    threads[#threads + 1] = thread
    thread:set("k", #threads)
end

function init(args)
    local j = 0
    for line in io.lines(args[1]) do
        j = j + 1
        if j == k then tok = line:match("^%S+%s+(%S+)") end
    end
end

function request()
    return wrk.format("POST", nil, { ["Content-Type"] = "application/json" },
                      '{"refresh_token":"' .. tok .. '"}')
end

function response(status, headers, body)
    local t = body:match('"refresh_token"%s*:%s*"([^"]+)"')
    if t then tok = t end
end
