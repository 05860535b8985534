// One node of a clustered Aedes MQTT broker for hark's tests: nodes started with the same
// Redis share subscriptions, sessions (persistent sessions and their queued QoS 1
// messages), retained messages and the published messages themselves (mqemitter-redis),
// so a client may connect to any node and move between them.
//
// usage: node broker.mjs REDIS_UNIX_SOCKET NODE_ID
// Listens on a free port of 127.0.0.1 and prints "listening PORT" once ready.
import net from 'node:net'
import { createRequire } from 'node:module'
import { Aedes } from 'aedes'

const require = createRequire(import.meta.url)
const mqemitterRedis = require('mqemitter-redis')
const persistenceRedis = require('aedes-persistence-redis')

const [socket, id] = process.argv.slice(2)
if (!socket || !id) {
  console.error('usage: node broker.mjs REDIS_UNIX_SOCKET NODE_ID')
  process.exit(2)
}
const mq = mqemitterRedis({ path: socket })
const persistence = persistenceRedis({ path: socket })
const aedes = await Aedes.createBroker({ id, mq, persistence })
aedes.on('clientError', (client, err) => console.error(`node ${id}: client ${client && client.id}: ${err.message}`))
const server = net.createServer(aedes.handle)
server.listen(0, '127.0.0.1', () => console.log(`listening ${server.address().port}`))
