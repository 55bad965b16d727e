-- POST /api/v1/auth/login with the right password, cycling through N
-- accounts: LOCAL+m0@DOMAIN .. LOCAL+m(N-1)@DOMAIN (bench/tools.py
-- accounts registers them). Arguments after "--": EMAIL N PASSWORD.
local threads = 0
local bodies, i = {}, 0

function setup(thread)              -- each thread starts elsewhere
    thread:set("first", threads * 53)
    threads = threads + 1
end

function init(args)
    local localpart, domain = args[1]:match("^(.*)@(.*)$")
    local n = tonumber(args[2])
    for k = 0, n - 1 do
        bodies[k + 1] = string.format(
            '{"email":"%s+m%d@%s","password":"%s"}', localpart, k, domain,
            args[3])
    end
    i = (first or 0) % n
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
end

function request()
    i = i % #bodies + 1
    return wrk.format(nil, nil, nil, bodies[i])
end
