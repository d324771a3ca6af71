"""Drives Microsoft's azure-iot-device SDK (pinned 2.14.0) against edgehub-sim.

Run by tests/tests/python_sdk.rs. Each scenario prints one JSON line of what the SDK
saw; the Rust side asserts both that and what the emulator recorded. The emulator is
poked through its control API (plain HTTP on loopback) while the SDK waits.
"""
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request

from azure.iot.device import IoTHubDeviceClient, IoTHubModuleClient, Message, MethodResponse, ProvisioningDeviceClient


def control(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(os.environ["SIM_CONTROL"] + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"null")


def wait_for(event, what, timeout=15):
    if not event.wait(timeout):
        raise SystemExit(f"timed out waiting for {what}")


def module_scenario(client, peer, module_id):
    """The full module round trip; `peer` is a second module that receives routed output."""
    out = {}
    patch_seen, method_seen, input_seen, routed_seen = (threading.Event() for _ in range(4))
    got = {}

    def on_patch(patch):
        # After connecting, the SDK replays the full desired section as a "patch" (so
        # nothing missed while offline is lost); wait for the real one.
        got.setdefault("patches", []).append(patch)
        if patch.get("telemetryInterval") == 5:
            got["patch"] = patch
            patch_seen.set()

    def on_method(request):
        got["method"] = {"name": request.name, "payload": request.payload}
        client.send_method_response(MethodResponse.create_from_method_request(request, 200, {"result": "ok", "echo": request.payload}))
        method_seen.set()

    def on_message(message):
        got["input"] = {
            "input": message.input_name,
            "body": message.data.decode(),
            "custom": message.custom_properties,
            "message_id": message.message_id,
        }
        input_seen.set()

    def on_peer_message(message):
        got["routed"] = {"input": message.input_name, "body": message.data.decode(), "custom": message.custom_properties}
        routed_seen.set()

    client.on_twin_desired_properties_patch_received = on_patch
    client.on_method_request_received = on_method
    client.on_message_received = on_message
    if peer is not None:
        peer.on_message_received = on_peer_message
        peer.connect()
    client.connect()

    twin = client.get_twin()
    out["twin_desired"] = twin["desired"]

    control("PATCH", f"/twins/edge-gw/{module_id}/desired", {"telemetryInterval": 5, "threshold": None})
    wait_for(patch_seen, "desired patch")
    out["patch"] = got["patch"]
    out["patches_seen"] = len(got["patches"])

    client.patch_twin_reported_properties({"firmware": "1.0.1", "telemetryInterval": {"value": 5, "ac": 200, "av": out["patch"]["$version"], "ad": "applied"}})

    result = control("POST", f"/methods/edge-gw/{module_id}/reboot?timeoutSecs=15", {"delay": 3})
    wait_for(method_seen, "method call")
    out["method"] = got["method"]
    out["method_result"] = result

    msg = Message(json.dumps({"temperature": 21.5}), content_encoding="utf-8", content_type="application/json")
    msg.message_id = "mid-0001"
    msg.correlation_id = "cid-0001"
    msg.custom_properties["alert"] = "true"
    msg.custom_properties["unit name"] = "deg C/F"
    msg.custom_properties["a&b=c"] = "x/y?z+1"
    client.send_message_to_output(msg, "output1")
    if peer is not None:
        wait_for(routed_seen, "routed message at the peer module")
        out["routed"] = got["routed"]

    control("POST", f"/inputs/edge-gw/{module_id}/input1", {"cmd": "hello"})
    wait_for(input_seen, "input message")
    out["input"] = got["input"]

    client.shutdown()
    if peer is not None:
        peer.shutdown()
    return out


def main():
    scenario = sys.argv[1]
    ca = open(os.environ["SIM_CA"]).read()
    if scenario == "module-connection-string":
        client = IoTHubModuleClient.create_from_connection_string(os.environ["MODULE_CS"], server_verification_cert=ca)
        peer = IoTHubModuleClient.create_from_connection_string(os.environ["PEER_CS"], server_verification_cert=ca)
        out = module_scenario(client, peer, "mod1")
    elif scenario == "module-edge-environment":
        client = IoTHubModuleClient.create_from_edge_environment()
        client.connect()
        twin = client.get_twin()
        client.send_message_to_output(Message(json.dumps({"via": "workload"})), "telemetry")
        client.patch_twin_reported_properties({"edgeEnv": True})
        client.shutdown()
        out = {"twin_desired": twin["desired"]}
    elif scenario == "child-device":
        client = IoTHubDeviceClient.create_from_connection_string(os.environ["DEVICE_CS"], server_verification_cert=ca)
        client.connect()
        client.send_message(Message(json.dumps({"leaf": 1}), content_encoding="utf-8", content_type="application/json"))
        client.patch_twin_reported_properties({"leafReported": True})
        out = {"twin": client.get_twin()}
        client.shutdown()
    elif scenario == "dps":
        host = os.environ["SIM_HOST"]
        prov = ProvisioningDeviceClient.create_from_symmetric_key(
            provisioning_host=host,
            registration_id=os.environ["REG_ID"],
            id_scope=os.environ["ID_SCOPE"],
            symmetric_key=os.environ["DEVICE_KEY"],
            server_verification_cert=ca,
        )
        prov.provisioning_payload = {"modelId": "dtmi:com:example:Thermostat;1", "iotcGateway": {"iotcGatewayId": "edge-gw", "iotcModuleId": "bridge"}}
        result = prov.register()
        state = result.registration_state
        device = IoTHubDeviceClient.create_from_symmetric_key(
            symmetric_key=os.environ["DEVICE_KEY"],
            hostname=state.assigned_hub,
            device_id=state.device_id,
            gateway_hostname=host,
            server_verification_cert=ca,
        )
        device.connect()
        device.send_message(Message(json.dumps({"provisioned": True})))
        device.shutdown()
        out = {"status": result.status, "assigned_hub": state.assigned_hub, "device_id": state.device_id}
        if os.environ.get("GROUP_KEY"):
            # The derivation as Microsoft's IoT Central tutorial writes it in Python.
            import base64, hashlib, hmac
            derived = hmac.new(base64.b64decode(os.environ["GROUP_KEY"]), os.environ["REG_ID"].encode("utf-8"), hashlib.sha256).digest()
            out["derived_key"] = base64.b64encode(derived).decode()
    elif scenario == "twin-limits":
        # IoT Hub's twin limits as the SDK meets them: a reported patch past 32 KB or with
        # a bad property name is refused (the SDK raises), a desired patch past 32 KB is
        # refused by the service API with 400, and the client stays connected throughout.
        client = IoTHubModuleClient.create_from_connection_string(os.environ["MODULE_CS"], server_verification_cert=ca)
        client.connect()
        out = {"reported_errors": []}
        client.patch_twin_reported_properties({"small": 1})
        v1 = client.get_twin()["reported"]["$version"]
        for bad in ({"big%d" % i: "x" * 4000 for i in range(9)}, {"a.b": 1}, {"deep": json.loads('{"a":' * 11 + "1" + "}" * 11)}):
            try:
                client.patch_twin_reported_properties(bad)
                out["reported_errors"].append(None)
            except Exception as e:  # the SDK raises ServiceError on a 4xx twin response
                out["reported_errors"].append(type(e).__name__)
        client.patch_twin_reported_properties({"small": 2})
        twin = client.get_twin()
        out["reported"] = twin["reported"]
        out["versions"] = [v1, twin["reported"]["$version"]]
        try:
            control("PATCH", "/twins/edge-gw/mod1/desired", {"huge%d" % i: "y" * 4000 for i in range(9)})
            out["desired_status"] = 200
        except urllib.error.HTTPError as e:
            out["desired_status"] = e.code
            out["desired_message"] = json.loads(e.read())["message"]
        out["desired_after"] = client.get_twin()["desired"]
        out["connected"] = client.connected
        client.shutdown()
    elif scenario == "wrong-key":
        client = IoTHubModuleClient.create_from_connection_string(os.environ["MODULE_CS"], server_verification_cert=ca, connection_retry=False)
        try:
            client.connect()
            out = {"connected": True}
        except Exception as e:  # the SDK raises CredentialError / ConnectionFailedError
            out = {"connected": False, "error": type(e).__name__}
        client.shutdown()
    else:
        raise SystemExit(f"unknown scenario {scenario}")
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
