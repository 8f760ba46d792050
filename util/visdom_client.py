"""The visdom client of util/visualizer.VisdomLink, in its own module: visdom is imported only by a run that plots."""
import requests
import visdom


class BoundedVisdom(visdom.Visdom):
    """A visdom client whose requests time out and raise ConnectionError (never print or hang).

    Built with send=False so the base constructor neither posts nor opens its event socket; the
    environment is then registered here, which raises ConnectionError if no server answers.
    """

    def __init__(self, server, port, env, timeout):
        self._timeout = timeout
        super().__init__(server=server, port=port, env=env, raise_exceptions=True,
                         use_incoming_socket=False, send=False)
        self.send = True
        self._session = requests.Session()
        self._send({'eid': env}, endpoint='env/' + env)

    def _handle_post(self, url, data=None):
        response = self.session.post(url, data=data, timeout=self._timeout)
        # visdom routes every path (errors are 500s); these come from something else on that address
        if response.status_code == 404 or 502 <= response.status_code <= 504:
            raise ConnectionError(f'HTTP {response.status_code} from {url}: not a visdom server')
        return response.text
