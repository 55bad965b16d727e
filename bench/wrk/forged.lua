-- GET with "Authorization: Bearer T", T the first access token of a file
-- ("access refresh" per line) with its signature replaced by random bytes
-- of the same length, spelled canonically: what a client sending made-up
-- signatures costs the daemon (no cache can hold them; each is checked
-- with the public key and refused 401). Argument after "--": FILE.
-- 1,024 requests are formatted once, in init(), and cycled.
local reqs, i, n = {}, 0, 0
local b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

-- base64url of `bytes` (a table of 0-255), without padding.
local function enc(bytes)
    local out, bits, acc = {}, 0, 0
    for _, b in ipairs(bytes) do
        acc = acc * 256 + b
        bits = bits + 8
        while bits >= 6 do
            bits = bits - 6
            local v = math.floor(acc / 2 ^ bits) % 64
            out[#out + 1] = b64:sub(v + 1, v + 1)
        end
        acc = acc % 2 ^ bits
    end
    if bits > 0 then
        local v = (acc * 2 ^ (6 - bits)) % 64
        out[#out + 1] = b64:sub(v + 1, v + 1)
    end
    return table.concat(out)
end

function init(args)
    local tok
    for line in io.lines(args[1]) do
        tok = line:match("^(%S+)")
        if tok then break end
    end
    local head = tok:match("^(.*%.)")
    local siglen = math.floor(#tok:match("([^.]*)$") * 6 / 8)
    for k = 1, 1024 do
        local bytes = {}
        for j = 1, siglen do bytes[j] = math.random(0, 255) end
        local h = { Authorization = "Bearer " .. head .. enc(bytes) }
        reqs[#reqs + 1] = wrk.format("GET", wrk.path, h)
    end
    n = #reqs
    i = math.random(n) - 1
end

function request()
    i = i % n + 1
    return reqs[i]
end
