// An aedes broker for the test suite's compatibility matrix (tests/compat/).
// Usage: node server.js '{"port": 1883, "wsPort": 8080, "tlsPort": 8883,
//                         "certFile": "server.pem", "keyFile": "server.key"}'
// Every listener but `port` is optional; persistence is aedes' default (memory).
import { readFileSync } from 'node:fs'
import { Aedes } from 'aedes'
import factory from 'aedes-server-factory'

const options = JSON.parse(process.argv[2] || '{}')
const host = '127.0.0.1'

function listen (server, port, what) {
  server.listen(port, host, () => console.log(`aedes ${what} listening on ${host}:${port}`))
}

const broker = await Aedes.createBroker()
listen(factory.createServer(broker), options.port, 'mqtt')
if (options.wsPort) {
  listen(factory.createServer(broker, { ws: true }), options.wsPort, 'websockets')
}
if (options.tlsPort) {
  const tls = {
    cert: readFileSync(options.certFile),
    key: readFileSync(options.keyFile)
  }
  listen(factory.createServer(broker, { tls }), options.tlsPort, 'tls')
}

function shutdown () {
  broker.close(() => process.exit(0))
}
process.on('SIGTERM', shutdown)
process.on('SIGINT', shutdown)
