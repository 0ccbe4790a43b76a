-- dh-p2p.lua: Wireshark/tshark dissector for the Dahua P2P protocol.
--
--   dhttp  Easy4IPCloud signalling (DHGET/DHPOST/NFGET/NFPOST text over UDP)
--   istun  inverted-STUN hole punching (every byte XOR 0xFF)
--   ptcp   PTCP ("PhonyTCP") session packets
--
-- All three are heuristic dissectors on UDP: they recognise packets by
-- content, on any port, exactly as `dhp2p decode` does (the codec's
-- classify function). Field names are listed in docs/DECODE.md.
--
-- Use:  tshark -X lua_script:dh-p2p.lua -o udp.try_heuristic_first:TRUE -r capture.pcap
-- (Wireshark tries port-based dissectors first unless that preference is set.)

local bit = bit32 or bit

------------------------------------------------------------------------
-- PTCP
------------------------------------------------------------------------
local ptcp = Proto("ptcp", "Phony TCP (Dahua P2P)")

local body_types = {
    [0x10] = "DATA", [0x11] = "BIND", [0x12] = "STATUS", [0x13] = "HEARTBEAT",
    [0x17] = "SIGN-REQUEST", [0x18] = "SIGN", [0x19] = "AUTH",
    [0x1a] = "AUTH-REPLY", [0x1b] = "AUTH-CONFIRM",
}

local pf = {
    -- Header field names kept from the original public dissector.
    sent    = ProtoField.uint32("ptcp.bytes_sent", "Bytes Sent", base.DEC),
    recv    = ProtoField.uint32("ptcp.bytes_recv", "Bytes Received", base.DEC),
    pid     = ProtoField.uint32("ptcp.package_id", "Package ID", base.HEX),
    lmid    = ProtoField.uint32("ptcp.local_message_id", "Local Message ID", base.DEC),
    rmid    = ProtoField.uint32("ptcp.remote_message_id", "Remote Message ID", base.DEC),
    body_len = ProtoField.uint32("ptcp.body_len", "Body Length", base.DEC),
    kind    = ProtoField.string("ptcp.kind", "Body"),
    syn     = ProtoField.bytes("ptcp.syn", "SYN"),
    btype   = ProtoField.uint8("ptcp.type", "Type", base.HEX, body_types),
    length  = ProtoField.uint24("ptcp.length", "Length", base.DEC),
    realm   = ProtoField.uint32("ptcp.realm", "Realm", base.HEX),
    padding = ProtoField.uint32("ptcp.padding", "Padding", base.HEX),
    payload = ProtoField.bytes("ptcp.payload", "Payload"),
    payload_str = ProtoField.string("ptcp.payload.string", "Payload (text)"),
    bind_port = ProtoField.uint32("ptcp.bind.port", "Target Port", base.DEC),
    bind_ip = ProtoField.ipv4("ptcp.bind.ip", "Target IPv4"),
    status  = ProtoField.string("ptcp.status", "Status"),
    trailer = ProtoField.bytes("ptcp.status.trailer", "Status Trailer"),
    sign    = ProtoField.bytes("ptcp.sign", "Sign"),
    data    = ProtoField.bytes("ptcp.data", "Data"),
    offset  = ProtoField.uint32("ptcp.stream_offset", "Realm Stream Offset", base.DEC),
}
ptcp.fields = pf

local ef_malformed = ProtoExpert.new("ptcp.malformed", "Malformed PTCP packet",
    expert.group.MALFORMED, expert.severity.ERROR)
ptcp.experts = { ef_malformed }

local rtsp_dissector = Dissector.get("rtsp")
-- First-pass bookkeeping: realm stream offsets, keyed by frame number.
local realm_next = {}      -- "conv/dir/realm" -> next offset
local frame_offset = {}    -- frame number -> offset of this DATA in its realm

local function looks_like_rtsp(tvb)
    if tvb:len() < 8 then return false end
    local head = tvb:range(0, math.min(tvb:len(), 16)):string()
    return head:match("^RTSP/1%.0 ") or head:match("^[A-Z_]+ rtsp://") or head:match("^[A-Z_]+ %*")
end

-- The body's kind exactly as the codec names it (src/codec/ptcp.rs): a known
-- type whose fixed fields are not canonical is UNKNOWN there too.
local function body_kind(btype, field_len, realm, pad, dlen, tvb)
    local bare = field_len == 0 and realm == 0 and pad == 0
    if btype == 0x10 then
        if pad ~= 0 then return "UNKNOWN" end
        if field_len ~= dlen then return "MALFORMED" end
        return "DATA"
    elseif btype == 0x11 then
        if dlen == 8 and pad == 0 and (field_len == 0 or field_len == 8) then return "BIND" end
    elseif btype == 0x12 then
        if field_len == 0 and pad == 0 and dlen >= 4 then
            local word = tvb(36, 4):string()
            if word == "CONN" or word == "DISC" then return "STATUS" end
        end
    elseif btype == 0x13 then
        if bare and dlen == 0 then return "HEARTBEAT" end
    elseif btype == 0x17 then
        if bare and dlen == 0 then return "SIGN-REQUEST" end
    elseif btype == 0x18 then
        if bare then return "SIGN" end
    elseif btype == 0x19 then
        if bare then return "AUTH" end
    elseif btype == 0x1a then
        if bare then return "AUTH-REPLY" end
    elseif btype == 0x1b then
        if bare and dlen == 0 then return "AUTH-CONFIRM" end
    end
    return "UNKNOWN"
end

local function ptcp_dissect(tvb, pinfo, tree)
    local len = tvb:len()
    if len < 4 or tvb:range(0, 4):string() ~= "PTCP" then return false end
    pinfo.cols.protocol = "PTCP"
    local t = tree:add(ptcp, tvb(), "Phony TCP")
    if len < 24 then
        t:add(pf.kind, "MALFORMED"):set_generated()
        t:add_proto_expert_info(ef_malformed,
            string.format("PTCP header truncated: %d bytes, need 24 (offset 0)", len))
        pinfo.cols.info = string.format("[malformed: header truncated, %d bytes]", len)
        return true
    end
    t:add(pf.sent, tvb(4, 4))
    t:add(pf.recv, tvb(8, 4))
    t:add(pf.pid, tvb(12, 4))
    t:add(pf.lmid, tvb(16, 4))
    t:add(pf.rmid, tvb(20, 4))
    local blen = len - 24
    t:add(pf.body_len, blen):set_generated()
    local info = string.format("sent=%d recv=%d pid=0x%08x lmid=%d rmid=%d",
        tvb(4, 4):uint(), tvb(8, 4):uint(), tvb(12, 4):uint(), tvb(16, 4):uint(), tvb(20, 4):uint())
    local kind
    if blen == 0 then
        kind = "ACK"
    elseif blen == 4 and tvb(24, 4):uint() == 0x00030100 then
        kind = "SYN"
        t:add(pf.syn, tvb(24, 4))
    elseif blen < 12 then
        kind = "MALFORMED"
        t:add_proto_expert_info(ef_malformed,
            string.format("PTCP body at offset 24 is %d bytes: neither the 4-byte SYN nor a 12-byte sub-header", blen))
    else
        local btype = tvb(24, 1):uint()
        local field_len = tvb(25, 3):uint()
        local realm = tvb(28, 4):uint()
        local pad = tvb(32, 4):uint()
        local dlen = blen - 12
        kind = body_kind(btype, field_len, realm, pad, dlen, tvb)
        local b = t:add(ptcp, tvb(24), kind)
        b:add(pf.btype, tvb(24, 1))
        b:add(pf.length, tvb(25, 3))
        b:add(pf.realm, tvb(28, 4))
        b:add(pf.padding, tvb(32, 4))
        if kind == "MALFORMED" then
            b:add_proto_expert_info(ef_malformed,
                string.format("DATA len field at offset 25 says %d bytes but %d bytes follow the sub-header (offset 36)", field_len, dlen))
        elseif kind == "DATA" then
            info = info .. string.format(" DATA realm=0x%08x len=%d", realm, dlen)
            if dlen > 0 then
                local data = tvb(36, dlen)
                b:add(pf.payload, data)
                local key = tostring(pinfo.src) .. ":" .. pinfo.src_port .. ">" ..
                    tostring(pinfo.dst) .. ":" .. pinfo.dst_port .. "/" .. realm
                if not pinfo.visited then
                    local off = realm_next[key] or 0
                    frame_offset[pinfo.number] = off
                    realm_next[key] = off + dlen
                end
                local off = frame_offset[pinfo.number] or 0
                b:add(pf.offset, data, off):set_generated()
                local sub = data:tvb()
                if off == 0 and looks_like_rtsp(sub) and rtsp_dissector then
                    rtsp_dissector:call(sub, pinfo, tree)
                    pinfo.cols.protocol = "PTCP"
                    pinfo.cols.info:clear_fence()
                    info = info .. " [RTSP]"
                else
                    local first = tvb(36, 1):uint()
                    if first >= 0x20 and first < 0x7f then
                        b:add(pf.payload_str, data:string())
                    end
                    info = info .. string.format(" [realm continuation @%d]", off)
                end
            end
        elseif kind == "BIND" then
            local port = tvb(36, 4):uint()
            b:add(pf.bind_port, tvb(36, 4))
            b:add(pf.bind_ip, tvb(40, 4))
            info = info .. string.format(" BIND realm=0x%08x %s:%d", realm, tostring(tvb(40, 4):ipv4()), port)
        elseif kind == "STATUS" then
            b:add(pf.status, tvb(36, 4))
            if dlen > 4 then b:add(pf.trailer, tvb(40, dlen - 4)) end
            info = info .. string.format(" STATUS realm=0x%08x %s", realm, tvb(36, 4):string())
        elseif (kind == "SIGN" or kind == "AUTH") and dlen > 0 then
            b:add(pf.sign, tvb(36, dlen))
            info = info .. string.format(" %s sign_len=%d", kind, dlen)
        elseif kind == "UNKNOWN" then
            info = info .. string.format(" UNKNOWN type=0x%02x body_len=%d", btype, blen)
            if dlen > 0 then b:add(pf.data, tvb(36, dlen)) end
        else
            info = info .. " " .. kind
            if dlen > 0 then b:add(pf.data, tvb(36, dlen)) end
        end
    end
    if kind == "ACK" or kind == "SYN" or kind == "MALFORMED" then
        info = info .. " " .. kind
    end
    t:add(pf.kind, kind):set_generated()
    pinfo.cols.info:clear_fence()
    pinfo.cols.info = info
    return true
end

function ptcp.dissector(tvb, pinfo, tree)
    return ptcp_dissect(tvb, pinfo, tree) and tvb:len() or 0
end
ptcp:register_heuristic("udp", ptcp_dissect)

------------------------------------------------------------------------
-- dhttp: cloud signalling
------------------------------------------------------------------------
local dhttp = Proto("dhttp", "Dahua HTTP (Easy4IPCloud signalling)")

local xml_names = {
    "US", "DS", "Address", "Token", "Agent", "PubAddr", "LocalAddr", "Nonce",
    "Identify", "IpEncrpt", "IpEncrptV2", "version", "Info", "DevVersion", "SID",
    "Time", "ErrCode", "Error", "Policy", "CreateDate", "DevAuth", "RandSalt",
    "UserName", "agentAddr", "Client", "Dev", "NatValueT", "TransType", "Relay",
}
local df = {
    method = ProtoField.string("dhttp.method", "Method"),
    path   = ProtoField.string("dhttp.path", "Path"),
    version = ProtoField.string("dhttp.version", "Version"),
    code   = ProtoField.uint16("dhttp.status", "Status Code", base.DEC),
    reason = ProtoField.string("dhttp.reason", "Reason Phrase"),
    header = ProtoField.string("dhttp.header", "Header"),
    cseq   = ProtoField.string("dhttp.cseq", "CSeq"),
    body   = ProtoField.string("dhttp.body", "Body"),
    element = ProtoField.string("dhttp.element", "Element"),
}
for _, n in ipairs(xml_names) do
    df["x_" .. n] = ProtoField.string("dhttp.body." .. n, n)
end
dhttp.fields = df

local http_dissector = Dissector.get("http")

local starts = { "DHGET ", "DHPOST ", "NFGET ", "NFPOST ", "GET ", "POST ", "HTTP/" }
local function is_cloud(tvb)
    local n = math.min(tvb:len(), 8)
    if n < 5 then return false end
    local head = tvb:range(0, n):string()
    for _, s in ipairs(starts) do
        if head:sub(1, #s) == s then return true end
    end
    return false
end

local function dhttp_dissect(tvb, pinfo, tree)
    if not is_cloud(tvb) then return false end
    local text = tvb:range():string()
    local head_end = text:find("\r\n\r\n", 1, true)
    pinfo.cols.protocol = "DHTTP"
    local t = tree:add(dhttp, tvb(), "Dahua HTTP")
    local first_end = text:find("\r\n", 1, true) or (#text + 1)
    local first = text:sub(1, first_end - 1)
    local a, b, c = first:match("^(%S+) (%S+) (.+)$")
    if a == nil then
        pinfo.cols.info = "malformed: " .. first
        return true
    end
    if a:sub(1, 5) == "HTTP/" then
        t:add(df.version, tvb(0, #a), a)
        t:add(df.code, tvb(#a + 1, #b), tonumber(b) or 0)
        t:add(df.reason, tvb(#a + #b + 2, #c), c)
        pinfo.cols.info = b .. " " .. c
    else
        t:add(df.method, tvb(0, #a), a)
        t:add(df.path, tvb(#a + 1, #b), b)
        t:add(df.version, tvb(#a + #b + 2, #c), c)
        pinfo.cols.info = a .. " " .. b
    end
    local pos = first_end + 2
    local stop = head_end or #text
    while pos < stop do
        local e = text:find("\r\n", pos, true) or (stop + 1)
        local line = text:sub(pos, e - 1)
        if #line > 0 then
            local h = t:add(df.header, tvb(pos - 1, #line), line)
            local name, value = line:match("^([^:]+):%s?(.*)$")
            if name and name:lower() == "cseq" then
                t:add(df.cseq, tvb(pos - 1, #line), value)
                pinfo.cols.info = tostring(pinfo.cols.info) .. " CSeq=" .. value
            end
            if name and name:lower() == "x-wsse" then
                h:append_text(" (digest shown as sent)")
            end
        end
        pos = e + 2
    end
    if head_end then
        local body_start = head_end + 4
        if body_start <= #text then
            local body = text:sub(body_start)
            local bt = t:add(df.body, tvb(body_start - 1), body)
            local scan = 1
            for name, value in body:gmatch("<([%w_]+)>([^<]*)</%1>") do
                local s = body:find("<" .. name .. ">", scan, true)
                local range = s and tvb(body_start - 1 + s - 1, #name * 2 + 5 + #value) or tvb(body_start - 1)
                if s then scan = s + 1 end
                local f = df["x_" .. name]
                if f then bt:add(f, range, value) else bt:add(df.element, range, name .. "=" .. value) end
            end
        end
    end
    -- Hand a GET/POST rewrite to Wireshark's HTTP dissector for its own view.
    if http_dissector and a:sub(1, 5) ~= "HTTP/" then
        local rewritten = text:gsub("^DH", ""):gsub("^NF", ""):gsub("Content%-Type: \r\n", "Content-Type: application/xml\r\n", 1)
        local ba = ByteArray.new(rewritten, true)
        local ours = tostring(pinfo.cols.info)
        http_dissector:call(ba:tvb("HTTP view"), pinfo, tree)
        pinfo.cols.info:clear_fence()
        pinfo.cols.info = ours
    end
    pinfo.cols.protocol = "DHTTP"
    return true
end
dhttp:register_heuristic("udp", dhttp_dissect)

------------------------------------------------------------------------
-- istun: inverted STUN
------------------------------------------------------------------------
local istun = Proto("istun", "Inverted STUN (Dahua P2P hole punch)")
local stun_types = { [0x0001] = "Binding Request", [0x0101] = "Binding Success Response", [0x0111] = "Binding Error Response" }
local attr_names = { [0x0004] = "SOURCE-ADDRESS", [0x8029] = "ICE-CONTROLLED", [0x802a] = "ICE-CONTROLLING" }
local sf = {
    mtype  = ProtoField.uint16("istun.type", "Message Type", base.HEX, stun_types),
    length = ProtoField.uint16("istun.length", "Message Length", base.DEC),
    cookie = ProtoField.bytes("istun.cookie", "Cookie"),
    txid   = ProtoField.bytes("istun.txid", "Transaction ID"),
    attr   = ProtoField.uint16("istun.attr", "Attribute", base.HEX, attr_names),
    identify = ProtoField.string("istun.identify", "Identify"),
    port   = ProtoField.uint16("istun.port", "Port", base.DEC),
    ip     = ProtoField.ipv4("istun.ip", "IPv4"),
    trailing = ProtoField.bytes("istun.trailing", "Bytes After Declared Length"),
}
istun.fields = sf
local stun_dissector = Dissector.get("stun-udp")

local function istun_dissect(tvb, pinfo, tree)
    local len = tvb:len()
    if len < 20 then return false end
    local b0 = tvb(0, 1):uint()
    if b0 ~= 0xff and b0 ~= 0xfe then return false end
    local ba = ByteArray.new()
    ba:set_size(len)
    for i = 0, len - 1 do ba:set_index(i, bit.bxor(tvb(i, 1):uint(), 0xff)) end
    local inv = ba:tvb("Inverted STUN")
    pinfo.cols.protocol = "ISTUN"
    local t = tree:add(istun, tvb(), "Inverted STUN")
    local mtype = inv(0, 2):uint()
    local mlen = inv(2, 2):uint()
    t:add(sf.mtype, tvb(0, 2), mtype)
    t:add(sf.length, tvb(2, 2), mlen)
    t:add(sf.cookie, tvb(4, 4))
    t:add(sf.txid, tvb(8, 12))
    local pos = 20
    local limit = math.min(len, 20 + mlen)
    while pos + 4 <= limit do
        local atype = inv(pos, 2):uint()
        local alen = inv(pos + 2, 2):uint()
        local at = t:add(sf.attr, tvb(pos, 4), atype)
        if pos + 4 + alen > len then break end
        if (atype == 0x8029 or atype == 0x802a) and alen == 8 then
            at:add(sf.identify, tvb(pos + 4, 8), inv(pos + 4, 8):bytes():tohex(true, " "))
        elseif atype == 0x0004 and alen == 8 then
            at:add(sf.port, tvb(pos + 6, 2), inv(pos + 6, 2):uint())
            at:add(sf.ip, tvb(pos + 8, 4), inv(pos + 8, 4):ipv4())
        end
        pos = pos + 4 + alen + ((4 - alen % 4) % 4)
    end
    if len > 20 + mlen then t:add(sf.trailing, tvb(20 + mlen)) end
    pinfo.cols.info = (stun_types[mtype] or string.format("type 0x%04x", mtype)) .. string.format(" len=%d", mlen)
    if stun_dissector and len == 20 + mlen then
        stun_dissector:call(inv, pinfo, tree)
    end
    pinfo.cols.protocol = "ISTUN"
    return true
end
istun:register_heuristic("udp", istun_dissect)
